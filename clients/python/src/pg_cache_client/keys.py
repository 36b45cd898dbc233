"""The canonical text of a Python cache key.

A key is stored as text, so a Python key must become the same text in every
process and every Python version (``hash()`` is neither) and two different keys
must never become the same text (one would read the other's value):

* a ``str`` is itself, so that ``cache.get("user:7")`` reads what SQL stores
  under ``'user:7'`` and prefixes (``delete_prefix``) work on it; unless it starts
  with ``\\x1f``, the mark of an encoded key, or holds a NUL (which text cannot),
  when it is encoded too;
* any other key is ``\\x1f`` followed by its encoding, a term of this grammar::

    None -> N    True -> T    False -> F
    int -> i<decimal>          float -> f<repr>        Decimal -> d<normalized>
    str -> "<JSON string>"     bytes -> x<hex>         UUID -> u<hex>
    date -> D<iso>   datetime -> T<iso>   time -> t<iso>   timedelta -> z<d>,<s>,<us>
    tuple -> (<term>,<term>...)    frozenset -> {<sorted terms>}

Numbers are typed: ``1``, ``1.0``, ``True`` and ``Decimal("1")`` are four keys
(a dict takes them for one); a lookup with the other type misses, it never reads
another key's value. Equal Decimals (``1.5`` and ``1.50``) are one key. Mutable
containers (list, dict, set) are refused with ``TypeError``, as a dict refuses
them. A ``str`` subclass is the ``str`` it equals.
"""

from __future__ import annotations

import datetime as _dt
import json as _json
from decimal import Decimal as _Decimal
from uuid import UUID as _UUID

__all__ = ["encode_key", "MARK"]

#: First character of an encoded (non-``str``) key.
MARK = "\x1f"

_dumps = _json.JSONEncoder(ensure_ascii=False).encode


def _term(k: object) -> str:
    t = type(k)
    if t is str:
        return _dumps(k)
    if t is int:
        return "i%d" % k
    if k is None:
        return "N"
    if t is bool:
        return "T" if k else "F"
    if t is tuple:
        return "(" + ",".join([_term(x) for x in k]) + ")"
    if t is frozenset:
        return "{" + ",".join(sorted([_term(x) for x in k])) + "}"
    if t is float:
        return "f" + repr(k + 0.0)  # -0.0 == 0.0: one key
    if t is _Decimal:
        return "d" + _decimal(k)
    if t is _dt.datetime:
        return "T" + k.isoformat()
    if t is _dt.date:
        return "D" + k.isoformat()
    if t is _dt.time:
        return "t" + k.isoformat()
    if t is _dt.timedelta:
        return "z%d,%d,%d" % (k.days, k.seconds, k.microseconds)
    if t is bytes:
        return "x" + k.hex()
    if t is _UUID:
        return "u" + k.hex
    # Subclasses (an IntEnum, a str subclass, a namedtuple) as their base type.
    for base, conv in _BASES:
        if isinstance(k, base):
            return _term(conv(k))
    raise TypeError(f"a cache key cannot hold a {t.__name__}: use str, int, float, bool, None, "
                    "Decimal, date, datetime, time, timedelta, bytes, UUID, tuple or frozenset")


_BASES = (
    (bool, bool),
    (int, int),
    (str, str.__str__),
    (float, float),
    (tuple, tuple),
    (frozenset, frozenset),
    (_Decimal, _Decimal),
    (_dt.datetime, lambda d: _dt.datetime.combine(d.date(), d.timetz())),
    (_dt.date, lambda d: _dt.date(d.year, d.month, d.day)),
    (bytes, bytes),
)


def _decimal(d: _Decimal) -> str:
    """Equal Decimals give one text, exactly: trailing zeros are dropped by hand
    (``normalize()`` rounds to the context's precision), and zero has no sign."""
    if not d.is_finite():
        return str(d)
    sign, digits, exponent = d.as_tuple()
    digits = list(digits)
    while len(digits) > 1 and digits[-1] == 0:
        digits.pop()
        exponent += 1
    if digits == [0]:
        return "0"
    return ("-" if sign else "") + "".join(map(str, digits)) + "e" + str(exponent)


def encode_key(key: object) -> str:
    """The text ``key`` is stored under (see the module's documentation)."""
    if isinstance(key, str):
        key = str.__str__(key)  # a str subclass (StrEnum, SafeString) is its text
        if not key.startswith(MARK) and "\x00" not in key:
            return key
    return MARK + _term(key)
