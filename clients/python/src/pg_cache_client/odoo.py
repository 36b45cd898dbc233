"""Odoo-style cache decorators over pg_cache, for any Python code with a psycopg
connection.

::

    registry = Registry(lambda: current_connection())   # or Registry(conn)

    class Partner:
        @registry.ormcache("self.id", "lang")
        def display_name(self, lang): ...

        @registry.ormcache_context("self.id", keys=("lang", "tz"))
        def label(self): ...            # the context: a ``context`` argument,
                                        # else self.env.context, else self._context

        @registry.ormcache_multi("self.model", multi="ids")
        def names(self, ids):           # called with the missing ids only,
            return {i: ... for i in ids}    # returns {id: value}

    registry.clear_cache("default")     # every worker sees it at once
    registry.clear_all_caches()

As in Odoo, each argument of a decorator is an expression over the method's
parameters, and the key is (the function and the model it runs on, *their
values).
Unlike Odoo's per-worker dictionaries, entries are shared by every process of
the database and exact: a clear commits and rolls back with the caller's
transaction, and a value computed before a concurrent clear committed is not
kept (a *fill*); no worker polls a signalling sequence or table.

Values are stored with the TAGGED codec (tuples, frozensets, dates, Decimal...
come back as they were); a method whose results no codec can carry (compiled
functions, records bound to an environment) must stay in the process, as Odoo
keeps such caches per worker.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable, Iterable

from .cache import MISSING, Cache
from .codecs import TAGGED, Codec

__all__ = ["Registry"]


def _key_function(func: Callable, exprs: Iterable[str]) -> Callable:
    """A function of ``func``'s arguments returning the values of ``exprs``,
    expressions over its parameters: compiled as a lambda with the method's own
    parameters, as Odoo compiles its ormcache arguments (so that comprehensions
    and generator expressions in them see the parameters)."""
    sig = inspect.signature(func)
    params, defaults, star = [], {}, False
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            params.append("*" + p.name)
            star = True
            continue
        if p.kind is p.VAR_KEYWORD:
            params.append("**" + p.name)
            continue
        if p.kind is p.KEYWORD_ONLY and not star:
            params.append("*")
            star = True
        if p.default is p.empty:
            params.append(p.name)
        else:
            defaults[p.name] = p.default
            params.append(f"{p.name}=__ormcache_defaults__[{p.name!r}]")
    if any(p.kind is p.POSITIONAL_ONLY for p in sig.parameters.values()):
        last = max(i for i, p in enumerate(sig.parameters.values()) if p.kind is p.POSITIONAL_ONLY)
        params.insert(last + 1, "/")
    code = f"lambda {', '.join(params)}: (" + "".join(f"{e}, " for e in exprs) + ")"
    scope = dict(getattr(func, "__globals__", {}))
    scope["__ormcache_defaults__"] = defaults
    return eval(code, scope)  # noqa: S307 - the developer's own expressions


def _owner(func: Callable, args) -> str:
    """What the key is per: the function's module and qualified name, and for a
    method the model it runs on (Odoo's ``_name``, else the class), so that a
    method inherited by two models, or two same-named classes, never share keys."""
    this = args[0] if args else None
    model = getattr(this, "_name", None) if this is not None else None
    if this is not None and not isinstance(model, str):
        cls = this if isinstance(this, type) else type(this)
        model = f"{cls.__module__}.{cls.__qualname__}"
    return f"{func.__module__}.{func.__qualname__}" + (f"@{model}" if model else "")


def _context_of(bound: inspect.BoundArguments) -> dict:
    args = bound.arguments
    if "context" in args and args["context"] is not None:
        return args["context"]
    this = args.get("self") or args.get("cls")
    env = getattr(this, "env", None)
    if env is not None and getattr(env, "context", None) is not None:
        return env.context
    return getattr(this, "_context", None) or {}


class Registry:
    """The caches of one database, reached through ``conn`` (a connection or a
    function returning the one to use now), named ``prefix + cache``."""

    def __init__(self, conn, prefix: str = "ormcache.", codec: Codec = TAGGED):
        self._conn = conn
        self.prefix = prefix
        self.codec = codec
        self._caches: dict = {}

    def cache(self, name: str = "default") -> Cache:
        c = self._caches.get(name)
        if c is None:
            c = self._caches[name] = Cache(self._conn, self.prefix + name, codec=self.codec)
        return c

    def clear_cache(self, *names: str) -> None:
        """Empties the caches ``names`` (default: ``"default"``) when the caller's
        transaction commits; every process sees it then."""
        for name in names or ("default",):
            self.cache(name).clear()

    def clear_all_caches(self) -> None:
        """Empties every cache of the registry (those used or declared by this
        process) when the caller's transaction commits."""
        for c in list(self._caches.values()):
            c.clear()

    # Decorators

    def ormcache(self, *args: str, cache: str = "default"):
        """Caches the method's result under (its owner, *args' values)."""
        return self._cached(args, cache, None)

    def ormcache_context(self, *args: str, keys: Iterable[str], cache: str = "default"):
        """:meth:`ormcache` with the values of the context ``keys`` in the key."""
        keys = tuple(keys)
        return self._cached(args, cache, lambda bound: tuple(_context_of(bound).get(k) for k in keys))

    def _cached(self, args, cache, extra):
        """The decorator of ormcache and ormcache_context: ``extra`` adds to the key
        what it finds in the call's bound arguments."""

        def decorate(func):
            key_of = _key_function(func, args)
            sig = inspect.signature(func)

            @functools.wraps(func)
            def wrapper(*a, **kw):
                c = self.cache(cache)
                key = (_owner(func, a), *key_of(*a, **kw))
                if extra is not None:
                    key = (*key, extra(sig.bind(*a, **kw)))
                value = c.get(key, MISSING)
                if value is MISSING:
                    value = func(*a, **kw)
                    c.set(key, value)
                return value

            wrapper.clear_cache = lambda: self.clear_cache(cache)
            return wrapper

        return decorate

    def ormcache_multi(self, *args: str, multi: str, cache: str = "default"):
        """Caches per element of the iterable parameter ``multi`` (ids): one
        ``cache_get_many`` round trip, then the method is called with only the
        missing ones and must return ``{id: value}``; the result covers all."""

        def decorate(func):
            key_of = _key_function(func, args)
            sig = inspect.signature(func)

            @functools.wraps(func)
            def wrapper(*a, **kw):
                bound = sig.bind(*a, **kw)
                bound.apply_defaults()
                ids = list(bound.arguments[multi])
                base = (_owner(func, a), *key_of(*a, **kw))
                c = self.cache(cache)
                found = c.get_many([(*base, i) for i in ids])
                result = {k[-1]: v for k, v in found.items()}
                missing = [i for i in ids if i not in result]
                if missing:
                    bound.arguments[multi] = missing
                    computed = func(*bound.args, **bound.kwargs)
                    c.set_many({(*base, i): computed[i] for i in missing if i in computed})
                    result.update(computed)
                return result

            return wrapper

        return decorate
