"""The stand-in's collector policy: survivors of full collections frozen until the heap doubles."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Callable, Iterator

import pytest

from eventhunting.standins.mongo.heap import FrozenBetweenCompleteCollections


class Node:
    other: Node | None = None


@pytest.fixture
def policy() -> Iterator[FrozenBetweenCompleteCollections]:
    installed = FrozenBetweenCompleteCollections()
    installed.install()
    try:
        yield installed
    finally:
        installed.uninstall()


def unfrozen(thing: object) -> bool:
    return any(candidate is thing for candidate in gc.get_objects())


@pytest.mark.usefixtures("policy")
def test_what_survives_a_full_collection_is_frozen() -> None:
    held = [Node()]
    assert unfrozen(held)
    gc.collect()
    assert gc.is_tracked(held)
    assert not unfrozen(held)


@pytest.mark.usefixtures("policy")
def test_a_frozen_object_is_freed_when_its_last_reference_goes() -> None:
    held = Node()
    gone = weakref.ref(held)
    gc.collect()
    del held
    assert gone() is None


@pytest.mark.usefixtures("policy")
def test_a_dead_cycle_among_frozen_objects_is_reclaimed_once_the_heap_doubled() -> None:
    first, second = Node(), Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    gc.collect()
    del first, second
    gc.collect()
    assert gone() is not None  # frozen: a full collection does not walk it

    added = [[] for _ in range(2 * sys.getallocatedblocks())]
    gc.collect()  # the heap has doubled: everything is unfrozen
    gc.collect()  # and this one walks it all
    assert gone() is None
    del added


def test_given_a_scheduler_the_complete_collection_comes_right_after_the_heap_doubled() -> None:
    scheduled: list[Callable[[], object]] = []
    policy = FrozenBetweenCompleteCollections(schedule=scheduled.append)
    policy.install()
    try:
        first, second = Node(), Node()
        first.other, second.other = second, first
        gone = weakref.ref(first)
        gc.collect()
        del first, second
        assert scheduled == []
        added = [[] for _ in range(2 * sys.getallocatedblocks())]
        gc.collect()
        # The heap has doubled: a complete collection was asked for (with no further full
        # collection needed to come first), and it reclaims the dead cycle.
        assert scheduled
        assert set(scheduled) == {gc.collect}
        for collect in scheduled:
            collect()
        assert gone() is None
        assert len(added) > 0
    finally:
        policy.uninstall()
