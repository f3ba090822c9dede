"""JSON read from files that someone else may have written.

Python's ``json`` parser recurses once per level of nesting: a checkpoint's
meta or config nested tens of thousands deep (a few hundred kilobytes of
brackets) raises ``RecursionError``, not the ``ValueError`` that callers
turn into an error naming the file. :func:`loads` refuses text nested
deeper than :data:`MAX_DEPTH` (configs and metas nest about ten deep) with
a ``ValueError`` before parsing.
"""
import json
import re
from itertools import accumulate

#: the deepest nesting of arrays and objects read
MAX_DEPTH = 100

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NESTING = {'[': 1, '{': 1, ']': -1, '}': -1}


def nesting_depth(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets in
    strings not counted)."""
    return max(accumulate(_NESTING.get(c, 0) for c in _STRING.sub('', text)),
               default=0)


def loads(text: str, **kwargs):
    """``json.loads(text, **kwargs)``; text nested deeper than
    :data:`MAX_DEPTH` is a ``ValueError``."""
    depth = nesting_depth(text)
    if depth > MAX_DEPTH:
        raise ValueError(f'JSON nested {depth} deep (at most {MAX_DEPTH} '
                         'levels are read)')
    return json.loads(text, **kwargs)
