import datetime as dt
import subprocess
import sys
from decimal import Decimal
from uuid import UUID

import pytest

from pg_cache_client.keys import MARK, encode_key

KEYS = [
    "user:7", "", 7, -7, 10**30, 1.5, True, False, None, Decimal("1.50"), b"\x00\xff",
    (1, "a", None), ((1, 2), frozenset({"x", "y"})), frozenset({3, 1, 2}), dt.date(2024, 2, 29),
    dt.datetime(2024, 2, 29, 12, 0, tzinfo=dt.timezone.utc), dt.datetime(2024, 2, 29, 12, 0),
    dt.time(1, 2, 3), dt.timedelta(days=-1, seconds=5), UUID(int=1), MARK + "x", "a\x00b",
]


def test_a_str_key_is_stored_as_itself():
    assert encode_key("user:7") == "user:7"
    assert encode_key("") == ""


def test_other_keys_carry_the_mark_and_a_string_with_the_mark_is_encoded():
    for k in KEYS[2:]:
        assert encode_key(k).startswith(MARK), k
    assert encode_key(MARK + "x") != MARK + "x"


def test_different_keys_never_share_a_text():
    texts = [encode_key(k) for k in KEYS]
    assert len(set(texts)) == len(KEYS)
    # Typed numbers: equal in Python, different keys here (a miss, never another's value).
    assert len({encode_key(1), encode_key(1.0), encode_key(True), encode_key(Decimal(1))}) == 4
    # Nested strings are quoted: no separator inside one can fake a structure.
    assert encode_key(("a,b",)) != encode_key(("a", "b"))
    assert encode_key(("a", ("b",))) != encode_key((("a", "b"),))


def test_equal_keys_share_a_text_whatever_their_order():
    assert encode_key(frozenset({1, 2, 3})) == encode_key(frozenset({3, 2, 1}))
    assert encode_key(Decimal("1.50")) == encode_key(Decimal("1.5"))
    assert encode_key((("lang", "fr"), frozenset({("a", 1), ("b", 2)}))) == encode_key(
        (("lang", "fr"), frozenset({("b", 2), ("a", 1)}))
    )


def test_decimals_are_exact_whatever_the_context_precision():
    from decimal import localcontext

    assert encode_key(Decimal("123456789012345678901234567890")) != encode_key(Decimal("123456789012345678901234567891"))
    assert encode_key(Decimal("1.00000000000000000000000000001")) != encode_key(Decimal("1"))
    with localcontext() as c:
        c.prec = 3
        assert encode_key(Decimal("1.2345")) != encode_key(Decimal("1.23"))
    assert encode_key(Decimal("100")) == encode_key(Decimal("1E+2"))
    assert encode_key(Decimal("0")) == encode_key(Decimal("-0.00"))
    assert encode_key(0.0) == encode_key(-0.0)


def test_a_str_subclass_is_the_str_it_equals():
    import enum

    class Lang(str, enum.Enum):
        FR = "fr"

    assert encode_key(Lang.FR) == encode_key("fr") == "fr"


def test_the_text_is_the_same_in_another_process():
    # Another interpreter with another hash seed: frozenset iteration order differs.
    key = (frozenset({"alpha", "beta", "gamma", "delta", 1, 2.5}), "x")
    code = (
        "from pg_cache_client.keys import encode_key;"
        "print(encode_key((frozenset({'alpha','beta','gamma','delta',1,2.5}),'x')).encode().hex())"
    )
    for seed in ("1", "2", "3"):
        out = subprocess.run([sys.executable, "-c", code], env={"PYTHONHASHSEED": seed, "PYTHONPATH": ":".join(sys.path)},
                             capture_output=True, text=True, check=True).stdout.strip()
        assert bytes.fromhex(out).decode() == encode_key(key)


def test_mutable_and_unknown_keys_are_refused():
    for k in ([1], {"a": 1}, {1}, object()):
        with pytest.raises(TypeError):
            encode_key(k)
