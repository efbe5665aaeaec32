"""`python -m kling_local.stack`: run the local stack in the foreground (what `local up` wires to)."""

import sys

from kling_local.stack.serve import main

sys.exit(main())
