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
