"""The local side of the pipeline: the Kling simulator, the embedded AWS stack and the CLI."""
