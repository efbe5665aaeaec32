"""The cold start's garbage collection: off while a handler module initialises, frozen after.

What a handler's init creates (modules, classes, pydantic validators, settings, AWS clients' models)
lives as long as the execution environment, so the collector's passes over it during init free
nothing; measured, they were a tenth to a fifth of a handler's import (docs/architecture.md, "Cold
start"). Each handler (functions/*/app.py) turns the collector off before its first import and calls
`init_done()` as its last line. `gc.freeze()` then moves everything init made to the permanent
generation, so no later collection rescans it either, and the collector is on again for the
invocations, where garbage is made.
"""

from __future__ import annotations

import gc


def init_done() -> None:
    """End of the cold start: keep what init made out of every later collection, collect again."""
    gc.freeze()
    gc.enable()
