"""What DynamoDB can store: a message's numbers (range and precision), text (valid Unicode) and
nesting, checked before a request is validated, so a job record never fails to be written.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

# Levels of JSON nesting a message may have (DynamoDB allows 32 in an item, which nests it twice).
MAX_NESTING = 16
# DynamoDB numbers: up to 38 significant digits, magnitude from 1E-130 to 9.99...E+125.
DYNAMO_MAX_DIGITS = 38
DYNAMO_LARGEST = Decimal("9.9999999999999999999999999999999999999E+125")
DYNAMO_SMALLEST = Decimal("1E-130")


def refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number DynamoDB (or Kling) can store")


def unstorable(value: Any, path: str = "", depth: int = 0) -> Iterator[str]:
    """'field: why' for every value of a message that DynamoDB cannot store: numbers out of its range
    or precision, strings that are not valid Unicode, nesting deeper than MAX_NESTING."""
    where = path or "message"
    if depth > MAX_NESTING:
        yield f"{where}: nests deeper than {MAX_NESTING} levels"
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        yield from _unstorable_number(value, where)
    elif isinstance(value, str):
        if not _is_unicode(value):
            yield f"{where}: is not valid Unicode text (it holds a lone surrogate)"
    elif isinstance(value, dict):
        for key, item in value.items():
            if not _is_unicode(str(key)):
                yield f"{where}: has a key that is not valid Unicode text"
                continue
            yield from unstorable(item, f"{path}.{key}" if path else str(key), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from unstorable(item, f"{where}[{index}]", depth + 1)


def _unstorable_number(value: float, where: str) -> Iterator[str]:
    if isinstance(value, float) and not math.isfinite(value):
        yield f"{where}: {value} is not a number DynamoDB can store"
        return
    number = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
    if number != 0 and not DYNAMO_SMALLEST <= abs(number) <= DYNAMO_LARGEST:
        yield f"{where}: {_short(number)} is outside the range DynamoDB can store (1E-130 to 9.9E+125)"
    elif len("".join(map(str, number.as_tuple().digits)).strip("0")) > DYNAMO_MAX_DIGITS:
        yield f"{where}: {_short(number)} has more than {DYNAMO_MAX_DIGITS} significant digits (send it as a string)"


def _short(number: Decimal) -> str:
    text = str(number)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable_text(text: str) -> str:
    """`text` as DynamoDB and SQS take it (valid UTF-8): a lone surrogate kept escaped, never lost."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
