"""The accounts read model in MongoDB (lists for admins; single reads fold the stream)."""

from __future__ import annotations

ACCOUNTS_COLLECTION = "accounts"
