"""The stand-in's own $set, $setOnInsert and $inc of top-level fields do what its engine does."""

from __future__ import annotations

from typing import Any
from unittest import mock

from bson import Int64
from hypothesis import given
from hypothesis import strategies as st

from eventhunting.standins.mongo import matching
from eventhunting.standins.mongo.errors import CommandError

NAMES = st.sampled_from(["a", "b", "n", "_id"])
VALUES: st.SearchStrategy[Any] = st.one_of(
    st.integers(-(2**31), 2**31 - 1),
    st.builds(Int64, st.integers(-(2**40), 2**40)),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.text(alphabet="xyz", max_size=3),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.sampled_from(["x", "y"]), st.integers(0, 9), max_size=2),
)
DOCUMENTS = st.dictionaries(NAMES, VALUES, max_size=4)
UPDATES = st.dictionaries(
    st.sampled_from(["$set", "$setOnInsert", "$inc"]),
    st.dictionaries(NAMES, VALUES, max_size=3),
    min_size=1,
)


def outcome(document: dict[str, Any], update: dict[str, Any], inserting: bool) -> str:
    """What applying the update leaves, with types and field order, and what it raised."""
    try:
        matching.apply_update(document, {}, update, None, inserting)
    except CommandError as error:
        return f"{error.code} {error.message} {document!r}"
    return repr(document)


@given(DOCUMENTS, UPDATES, st.booleans())
def test_top_level_updates_leave_what_the_engine_leaves(
    document: dict[str, Any], update: dict[str, Any], inserting: bool
) -> None:
    own = outcome(matching.clone(document), update, inserting)
    with mock.patch.object(matching, "_apply_to_top_level_fields", return_value=False):
        by_engine = outcome(matching.clone(document), update, inserting)
    assert own == by_engine


def test_a_set_value_is_a_copy_of_the_update_one() -> None:
    update = {"$set": {"lines": [{"quantity": 1}]}}
    document: dict[str, Any] = {}
    matching.apply_update(document, {}, update, None, inserting=False)
    document["lines"][0]["quantity"] = 2
    assert update == {"$set": {"lines": [{"quantity": 1}]}}


def test_dotted_and_other_operators_still_go_to_the_engine() -> None:
    document: dict[str, Any] = {"a": {"b": 1}, "tags": ["x"]}
    matching.apply_update(
        document, {}, {"$set": {"a.c": 2}, "$push": {"tags": "y"}}, None, inserting=False
    )
    assert document == {"a": {"b": 1, "c": 2}, "tags": ["x", "y"]}
