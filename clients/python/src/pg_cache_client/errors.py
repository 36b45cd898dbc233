"""Typed errors, from the SQLSTATE pg_cache raises (its README lists them).

Each carries ``sqlstate``, the server's message and hint, and the driver's
exception as ``__cause__``. A deadlock (40P01) or a lock wait past
``lock_timeout`` (55P03) on a key's lock stays the driver's own error (an
``OperationalError``), so that the retry loops of frameworks (Tryton's, Django
helpers) see it as they see any other. Like any server error, it leaves the caller's
transaction aborted: roll back (or roll back to a savepoint) before going on.
"""

from __future__ import annotations

__all__ = [
    "CacheError",
    "InvalidArgument",
    "LimitExceeded",
    "NoSlot",
    "OutOfMemory",
    "PermissionDenied",
    "WrongValueKind",
    "OutOfRange",
    "ReadOnly",
    "NotReady",
    "NotInstalled",
    "from_driver_error",
]


class CacheError(Exception):
    """An error pg_cache raised; ``sqlstate`` says which."""

    sqlstate: str | None = None

    def __init__(self, message: str, sqlstate: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate or type(self).sqlstate
        self.hint = hint


class InvalidArgument(CacheError, ValueError):
    """22023 or 22004: a bad or NULL argument (an empty name, a zero ttl...)."""


class LimitExceeded(CacheError):
    """54000: a key, value or entry over a limit, more than 10,000 keys in a call."""


class NoSlot(CacheError):
    """53400: no slot is left for a new cache name."""


class OutOfMemory(CacheError, MemoryError):
    """53200: the backend cannot hold more pending writes, or the lock table is full."""


class PermissionDenied(CacheError, PermissionError):
    """42501: the role may not read, write or redeclare the cache."""


class WrongValueKind(CacheError, TypeError):
    """42804: a jsonb read of a bytea entry (or the reverse), incr of a non-integer."""


class OutOfRange(CacheError, OverflowError):
    """22003: an increment past bigint."""


class ReadOnly(CacheError):
    """25006: a write on a hot standby, or a declaration that cannot apply."""


class NotReady(CacheError):
    """55000: pg_cache is not in shared_preload_libraries, the extension needs
    ``ALTER EXTENSION pg_cache UPDATE``, or a cache cannot do what was asked."""


class NotInstalled(CacheError):
    """The database has no pg_cache extension (``CREATE EXTENSION pg_cache``)."""


_BY_STATE = {
    "22023": InvalidArgument,
    "22004": InvalidArgument,
    "42622": InvalidArgument,
    "54000": LimitExceeded,
    "53400": NoSlot,
    "53200": OutOfMemory,
    "42501": PermissionDenied,
    "42804": WrongValueKind,
    "22003": OutOfRange,
    "25006": ReadOnly,
    "55000": NotReady,
}


def _diag(exc):
    # psycopg 3: .sqlstate and .diag.message_primary; psycopg2: .pgcode and .diag.
    # Django wraps the driver's error: its cause is the driver's.
    for e in (exc, exc.__cause__):
        if e is not None and (getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)):
            exc = e
            break
    state = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    diag = getattr(exc, "diag", None)
    message = getattr(diag, "message_primary", None) or str(exc).strip()
    hint = getattr(diag, "message_hint", None)
    return state, message, hint


def from_driver_error(exc: BaseException) -> BaseException:
    """The :class:`CacheError` for a driver's database error, or ``exc`` itself
    when its SQLSTATE is not one of pg_cache's (a serialization failure, a
    connection lost...)."""
    state, message, hint = _diag(exc)
    cls = _BY_STATE.get(state or "")
    if cls is None:
        return exc
    err = cls(message, state, hint)
    err.__cause__ = exc
    return err
