"""Names of the write-side counter hashes (`{p<k>}:counter:<name>`) and how to read them back."""

from __future__ import annotations

INVENTORY_PREFIX = "inventory:"
ACCOUNT_FLAGS_PREFIX = "account:"


def inventory_counter(ticket_type_id: str) -> str:
    """The counter (`capacity`, `held`, `sold`) of a ticket type, in its event's partition."""
    return INVENTORY_PREFIX + ticket_type_id


def ticket_type_of_inventory_counter(name: str) -> str:
    """The ticket type an `inventory_counter` name belongs to (a guard names its counter)."""
    if not name.startswith(INVENTORY_PREFIX):
        raise ValueError(f"{name!r} is not an inventory counter")
    return name.removeprefix(INVENTORY_PREFIX)


def account_flags_counter(account_id: str) -> str:
    """The counter of an account's roles, staff grants and disabled flag (each 0 or 1)."""
    return ACCOUNT_FLAGS_PREFIX + account_id


CHECKINS_PREFIX = "checkins:"
CHECKED_IN_FIELD = "checked_in"
TICKET_TYPE_FIELD_PREFIX = "type:"
GATE_FIELD_PREFIX = "gate:"


def checkins_counter(event_id: str) -> str:
    """The counter of an event's check-ins, in its partition: `checked_in` in all, and one
    field per ticket type (`type:<id>`) and per gate (`gate:<name>`, `gate:` for none)."""
    return CHECKINS_PREFIX + event_id


def checkin_deltas(ticket_type_id: str, gate: str | None) -> dict[str, int]:
    """What one check-in adds to its event's `checkins_counter`."""
    return {
        CHECKED_IN_FIELD: 1,
        TICKET_TYPE_FIELD_PREFIX + ticket_type_id: 1,
        GATE_FIELD_PREFIX + (gate or ""): 1,
    }
