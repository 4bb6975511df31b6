import pytest

from shared import dimensions as d
from shared.errors import ValidationError


def test_or_expands_to_flat_alternatives():
    dims = {"pool": ["p"], "os": ["Linux|Mac"], "cpu": ["x86|arm"]}
    assert sorted(sorted(a) for a in d.expand(dims)) == sorted([
        sorted({"pool:p", "os:Linux", "cpu:x86"}), sorted({"pool:p", "os:Linux", "cpu:arm"}),
        sorted({"pool:p", "os:Mac", "cpu:x86"}), sorted({"pool:p", "os:Mac", "cpu:arm"}),
    ])


def test_match_needs_every_key_and_value():
    bot = d.flatten({"pool": ["p"], "os": ["Linux", "Ubuntu"], "id": ["b1"]})
    assert d.matches({"pool": ["p"]}, bot)
    assert d.matches({"pool": ["p"], "os": ["Linux", "Ubuntu"]}, bot)
    assert not d.matches({"pool": ["p"], "os": ["Linux", "Mac"]}, bot)
    assert d.matches({"pool": ["p"], "os": ["Mac|Ubuntu"]}, bot)
    assert not d.matches({"pool": ["q"]}, bot)
    assert d.matches({"pool": ["p"], "id": ["b1"]}, bot)
    assert not d.matches({"pool": ["p"], "id": ["b2"]}, bot)


def test_more_than_eight_alternatives_is_refused():
    dims = {"pool": ["p"], "a": ["1|2|3"], "b": ["1|2|3"]}
    with pytest.raises(ValidationError, match="8 alternatives"):
        d.validate_task(dims, "dims")
    d.validate_task({"pool": ["p"], "a": ["1|2"], "b": ["1|2"], "c": ["1|2"]}, "dims")


@pytest.mark.parametrize("dims,field", [
    ({"os": ["Linux"]}, "dims.pool"),
    ({"pool": ["a", "b"]}, "dims.pool"),
    ({"pool": ["a|b"]}, "dims.pool"),
    ({"pool": ["p"], "id": ["a|b"]}, "dims.id"),
    ({"pool": ["p"], "9x": ["v"]}, "dims.9x"),
    ({"pool": ["p"], "k" * 65: ["v"]}, "dims." + "k" * 65),
    ({"pool": ["p"], "k": ["v" * 257]}, "dims.k"),
    ({"pool": ["p"], "k": [" v"]}, "dims.k"),
    ({"pool": ["p"], "k": ["v", "v"]}, "dims.k"),
    ({"pool": ["p"], "k": [str(i) for i in range(17)]}, "dims.k"),
    ({"pool": ["p"], "k": ["a||b"]}, "dims.k"),
    ({"pool": ["p"], **{f"k{i}": ["v"] for i in range(32)}}, "dims"),
])
def test_limits(dims, field):
    with pytest.raises(ValidationError) as e:
        d.validate_task(dims, "dims")
    assert e.value.field == field


def test_wire_pairs_round_trip_and_repeated_keys_and():
    pairs = [{"key": "pool", "value": "p"}, {"key": "os", "value": "b"}, {"key": "os", "value": "a"}]
    dims = d.validate_task(d.from_pairs(pairs, "f"), "f")
    assert dims == {"os": ["a", "b"], "pool": ["p"]}
    assert d.from_pairs(d.to_pairs(dims), "f") == dims
    with pytest.raises(ValidationError):
        d.from_pairs([{"key": "pool"}], "f")
