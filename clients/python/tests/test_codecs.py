import datetime as dt
from decimal import Decimal
from types import MappingProxyType
from uuid import UUID

import pytest

from pg_cache_client.codecs import BYTES, JSON, TAGGED, PickleCodec

VALUES = [
    None, True, 0, -5, 10**40, 1.5, 1e16, -0.0, float("inf"), "text", "nul\x00inside", "",
    [1, [2, "x"]], (1, (2, 3)), (), frozenset({1, 2}), {3, 4}, {"a": 1, "b": [1, 2]},
    {1: "int key", (1, 2): "tuple key"}, {"$t": "looks like a tag"}, {"k\x00": 1},
    Decimal("1.50"), Decimal("-0E+3"), dt.date(2024, 2, 29), dt.datetime(2024, 2, 29, 1, 2, 3, 4),
    dt.datetime(2024, 2, 29, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2))), dt.time(23, 59),
    dt.timedelta(days=2, microseconds=7), b"\x00\xffbytes", UUID(int=5),
    MappingProxyType({"ids": (1, 2), "ctx": MappingProxyType({"lang": "fr"})}),
]


def same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and a != a:
        return b != b
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, (dict, MappingProxyType)):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and a == 0:
        return str(a) == str(b)
    return a == b


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_tagged_round_trip_gives_an_equal_value_of_the_same_type(value):
    assert same(TAGGED.decode(TAGGED.encode(value)), value)


def test_json_shaped_data_is_plain_json():
    assert TAGGED.encode({"a": [1, "x", None, True]}) == '{"a":[1,"x",null,true]}'


def test_what_tagged_cannot_carry_is_refused():
    with pytest.raises(TypeError, match="PickleCodec"):
        TAGGED.encode(object())


def test_plain_json_turns_tuples_into_lists():
    assert JSON.decode(JSON.encode((1, 2))) == [1, 2]


def test_pickle_and_bytes_store_bytea():
    assert PickleCodec().kind == BYTES.kind == "bytea"
    assert PickleCodec().decode(PickleCodec().encode({1: (2,)})) == {1: (2,)}
    with pytest.raises(TypeError):
        BYTES.encode("not bytes")
