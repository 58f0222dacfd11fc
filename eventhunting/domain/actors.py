"""Who issues a command or reads: an account, and whether it acts as an admin."""

from __future__ import annotations

import msgspec


class Actor(msgspec.Struct, frozen=True):
    account_id: str
    is_admin: bool = False
