"""The per-process account-state cache keeps an account's roles for at most its bound."""

from __future__ import annotations

from eventhunting.api.auth import AccountStateCache

CUSTOMER = frozenset({"customer"})
ORGANIZER = frozenset({"customer", "organizer"})
NO_STAFF: frozenset[str] = frozenset()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_state_is_reused_until_the_bound_after_its_read_began_then_read_again() -> None:
    clock = FakeClock()
    cache = AccountStateCache(2, clock=clock)
    cache.put("a", ORGANIZER, NO_STAFF, read_started=clock.now - 0.5)
    clock.now += 1.4
    assert cache.get("a") == (ORGANIZER, NO_STAFF)
    clock.now += 0.1
    assert cache.get("a") is None
    assert len(cache) == 0


def test_zero_seconds_keeps_nothing() -> None:
    clock = FakeClock()
    cache = AccountStateCache(0, clock=clock)
    cache.put("a", CUSTOMER, NO_STAFF, read_started=clock.now)
    assert cache.get("a") is None


def test_forgetting_an_account_drops_its_state_at_once() -> None:
    clock = FakeClock()
    cache = AccountStateCache(5, clock=clock)
    cache.put("a", ORGANIZER, frozenset({"event-1"}), read_started=clock.now)
    cache.forget("a")
    cache.forget("never-seen")
    assert cache.get("a") is None


def test_a_full_cache_drops_its_oldest_entry() -> None:
    clock = FakeClock()
    cache = AccountStateCache(5, size=2, clock=clock)
    cache.put("a", CUSTOMER, NO_STAFF, read_started=clock.now)
    cache.put("b", CUSTOMER, NO_STAFF, read_started=clock.now)
    cache.put("a", ORGANIZER, NO_STAFF, read_started=clock.now)
    cache.put("c", CUSTOMER, NO_STAFF, read_started=clock.now)
    assert len(cache) == 2
    assert cache.get("b") is None
    assert cache.get("a") == (ORGANIZER, NO_STAFF)
    assert cache.get("c") == (CUSTOMER, NO_STAFF)
