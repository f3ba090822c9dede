"""How a message names many files: the first few, sorted, and a count of
the rest (the data checks, the converters, the data sets' layout
checks)."""
from typing import Iterable

#: how many file names a message lists
NUM_FILES_SHOWN = 5


def listed(paths: Iterable[str], shown: int = NUM_FILES_SHOWN) -> str:
    """The first ``shown`` of ``paths`` sorted, and how many more there
    are."""
    paths = sorted(paths)
    more = len(paths) - shown
    return ', '.join(paths[:shown]) + (f' and {more} more' if more > 0 else '')
