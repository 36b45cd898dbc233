"""pg_cache from Python: a transactional cache in PostgreSQL's shared memory,
used over the connections an application already has.

>>> import psycopg
>>> from pg_cache_client import Cache
>>> with psycopg.connect("dbname=app") as conn:
...     prices = Cache(conn, "product.price")
...     prices.get(42) or prices.set(42, compute_price(42))
...     # the set takes effect when conn's transaction commits

Modules: :mod:`.aio` (asyncio), :mod:`.near` (in-process copies kept by the
change feed), :mod:`.tryton`, :mod:`.django`, :mod:`.odoo`, :mod:`.cachy`. See
the README of pg_cache, "From Python".
"""

from .cache import MISSING, NEVER, Cache, clear_all
from .codecs import BYTES, JSON, TAGGED, BytesCodec, Codec, JSONCodec, PickleCodec, TaggedJSONCodec
from .errors import (
    CacheError,
    InvalidArgument,
    LimitExceeded,
    NoSlot,
    NotInstalled,
    NotReady,
    OutOfMemory,
    OutOfRange,
    PermissionDenied,
    ReadOnly,
    WrongValueKind,
)
from .keys import encode_key

__version__ = "0.4.0"

__all__ = [
    "Cache", "clear_all", "MISSING", "NEVER", "encode_key",
    "Codec", "TaggedJSONCodec", "JSONCodec", "PickleCodec", "BytesCodec", "TAGGED", "JSON", "BYTES",
    "CacheError", "InvalidArgument", "LimitExceeded", "NoSlot", "NotInstalled",
    "NotReady", "OutOfMemory", "OutOfRange", "PermissionDenied", "ReadOnly", "WrongValueKind",
]
