"""The fault-injection suite (`make chaos`): faults.py is the matrix, saboteurs.py what the rows do to the
stack besides the simulator's knobs, runner.py one row and its invariants, suite.py the run over every row,
tables.py the terminal table, cli.py `python -m bench chaos`."""
