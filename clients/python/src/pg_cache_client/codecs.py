"""How Python values become cache values and back.

A codec stores values either as ``jsonb`` (readable from SQL, usable by
``cache_incr``) or as ``bytea``. Choose per cache:

* :data:`TAGGED` (the default): JSON for JSON-shaped data, so SQL reads plain
  JSON; what JSON cannot carry is wrapped in a one-member object whose name is a
  tag: ``{"$t": [...]}`` a tuple, ``{"$fs": [...]}`` a frozenset, ``{"$s": [...]}``
  a set, ``{"$d": "1.50"}`` a Decimal, ``{"$dt": iso}``/``{"$D": iso}``/
  ``{"$tm": iso}`` datetime/date/time, ``{"$td": [days, s, us]}`` a timedelta,
  ``{"$b": base64}`` bytes, ``{"$u": hex}`` a UUID, ``{"$f": repr}`` a float JSON
  numbers would not bring back as a float (``1e+16``, ``-0.0``, ``nan``),
  ``{"$n": [parts]}`` a string holding NUL (``jsonb`` refuses ``\\u0000``),
  ``{"$m": [[key, value], ...]}`` a dict whose keys are not all plain strings
  (or start with ``$``), ``{"$mp": {...}}`` a ``MappingProxyType``, and with
  ``TaggedJSONCodec(pickle=True)`` ``{"$p": base64}`` any other value, pickled. A round trip
  gives back an equal value of the same type. Other types raise ``TypeError``.
* :data:`JSON`: ``json.dumps``/``json.loads`` as they are (tuples come back as
  lists), for values shared with code that is not Python.
* :class:`PickleCodec`: any picklable value, as ``bytea``. Unpickling runs code
  chosen by whoever wrote the value, so use it only for a cache no untrusted role
  can write (``cache_create(..., writers => ...)``); never the default.
* :data:`BYTES`: ``bytes`` as they are, as ``bytea``.
"""

from __future__ import annotations

import base64 as _b64
import datetime as _dt
import json as _json
import math as _math
import pickle as _pickle
from decimal import Decimal as _Decimal
from types import MappingProxyType as _MappingProxyType
from uuid import UUID as _UUID

__all__ = ["Codec", "TaggedJSONCodec", "JSONCodec", "PickleCodec", "BytesCodec", "TAGGED", "JSON", "BYTES"]


class Codec:
    """Turns values into what a cache stores (``str`` of JSON for ``kind == "jsonb"``,
    ``bytes`` for ``kind == "bytea"``) and back."""

    kind = "jsonb"

    def encode(self, value):  # pragma: no cover - interface
        raise NotImplementedError

    def decode(self, stored):  # pragma: no cover - interface
        raise NotImplementedError


_PLAIN = (str, int, bool, type(None))
_dumps = _json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _float(f: float):
    r = repr(f)
    if "e" in r or "n" in r or (f == 0.0 and _math.copysign(1.0, f) < 0):
        return {"$f": r}
    return f


def _plain_key(k) -> bool:
    return type(k) is str and not k.startswith("$") and "\x00" not in k


def _tag(v, fallback=None):
    t = type(v)
    if t is str:
        return v if "\x00" not in v else {"$n": v.split("\x00")}
    if t in _PLAIN:
        return v
    if t is float:
        return _float(v)
    if t is dict:
        if all(_plain_key(k) for k in v):
            return {k: _tag(x, fallback) for k, x in v.items()}
        return {"$m": [[_tag(k, fallback), _tag(x, fallback)] for k, x in v.items()]}
    if t is list:
        return [_tag(x, fallback) for x in v]
    if t is tuple:
        return {"$t": [_tag(x, fallback) for x in v]}
    if t is _MappingProxyType:
        return {"$mp": _tag(dict(v), fallback)}
    if t is frozenset:
        return {"$fs": [_tag(x, fallback) for x in v]}
    if t is set:
        return {"$s": [_tag(x, fallback) for x in v]}
    if t is _Decimal:
        return {"$d": str(v)}
    if t is _dt.datetime:
        return {"$dt": v.isoformat()}
    if t is _dt.date:
        return {"$D": v.isoformat()}
    if t is _dt.time:
        return {"$tm": v.isoformat()}
    if t is _dt.timedelta:
        return {"$td": [v.days, v.seconds, v.microseconds]}
    if t in (bytes, bytearray, memoryview):
        return {"$b": _b64.b64encode(bytes(v)).decode("ascii")}
    if t is _UUID:
        return {"$u": v.hex}
    if fallback is not None:
        return fallback(v)
    raise TypeError(
        f"the TAGGED codec cannot store a {t.__name__}: convert it, or use TaggedJSONCodec(pickle=True) "
        "or PickleCodec for a cache only trusted roles write"
    )


_UNTAG = {
    "$t": tuple,
    "$fs": frozenset,
    "$s": set,
    "$d": _Decimal,
    "$dt": _dt.datetime.fromisoformat,
    "$D": _dt.date.fromisoformat,
    "$tm": _dt.time.fromisoformat,
    "$td": lambda a: _dt.timedelta(days=a[0], seconds=a[1], microseconds=a[2]),
    "$b": lambda s: _b64.b64decode(s),
    "$u": lambda h: _UUID(hex=h),
    "$f": float,
    "$n": lambda parts: "\x00".join(parts),
    "$m": lambda pairs: {k: v for k, v in pairs},
    "$mp": lambda d: _MappingProxyType(d),
}


def _untagger(tags: dict):
    """The ``object_hook`` that turns one-member objects named by ``tags`` back into
    values (bottom-up: their members are already decoded)."""

    def untag(d: dict):
        if len(d) == 1:
            for k, v in d.items():
                if k[:1] == "$":
                    f = tags.get(k)
                    if f is not None:
                        return f(v)
        return d

    return untag


_untag = _untagger(_UNTAG)


def _pickled(v):
    return {"$p": _b64.b64encode(_pickle.dumps(v, _pickle.HIGHEST_PROTOCOL)).decode("ascii")}


_untag_pickle = _untagger(dict(_UNTAG, **{"$p": lambda s: _pickle.loads(_b64.b64decode(s))}))


class TaggedJSONCodec(Codec):
    """JSON, with tags for what JSON cannot carry (see the module's documentation).

    With ``pickle=True`` any other picklable value is stored pickled inside the
    JSON (``{"$p": base64}``), as Django's cache backends pickle: integers stay
    JSON integers (``incr`` works on them) and JSON data stays readable from
    SQL. Unpickling runs code chosen by whoever wrote the value: only for caches
    no untrusted role can write. Without it, a ``$p`` member is left as it is.
    """

    kind = "jsonb"

    def __init__(self, pickle: bool = False):
        self.pickle = pickle
        self._fallback = _pickled if pickle else None
        self._hook = _untag_pickle if pickle else _untag

    def encode(self, value) -> str:
        return _dumps(_tag(value, self._fallback))

    def decode(self, stored: str):
        return _json.loads(stored, object_hook=self._hook)


class JSONCodec(Codec):
    """Plain JSON: tuples come back as lists, and other types raise ``TypeError``."""

    kind = "jsonb"

    def encode(self, value) -> str:
        return _dumps(value)

    def decode(self, stored: str):
        return _json.loads(stored)


class PickleCodec(Codec):
    """Any picklable value, as ``bytea``. Unpickling executes code the writer chose:
    use it only for caches that no untrusted role can write."""

    kind = "bytea"

    def __init__(self, protocol: int = _pickle.HIGHEST_PROTOCOL):
        self.protocol = protocol

    def encode(self, value) -> bytes:
        return _pickle.dumps(value, self.protocol)

    def decode(self, stored: bytes):
        return _pickle.loads(stored)


class BytesCodec(Codec):
    """``bytes`` stored as they are."""

    kind = "bytea"

    def encode(self, value) -> bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"the BYTES codec stores bytes, not {type(value).__name__}")
        return bytes(value)

    def decode(self, stored) -> bytes:
        return bytes(stored)


TAGGED = TaggedJSONCodec()
JSON = JSONCodec()
BYTES = BytesCodec()
