"""The mailer worker refuses to start without what it signs and sends with, in one line."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from eventhunting.tickets.qr_keys import private_key_text


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"EVENTHUNTING_SMTP_URL": "smtp://127.0.0.1:2525"}, "EVENTHUNTING_QR_SIGNING_KEY"),
        (
            {"EVENTHUNTING_QR_SIGNING_KEY": private_key_text(Ed25519PrivateKey.generate())},
            "EVENTHUNTING_SMTP_URL",
        ),
    ],
)
def test_the_mailer_stops_at_start_naming_the_missing_variable(
    extra: dict[str, str], named: str, tmp_path: Path
) -> None:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        # Nothing listens there: the check comes before any connection.
        "EVENTHUNTING_REDIS_URL": "redis://127.0.0.1:9/0",
        "EVENTHUNTING_MONGODB_URL": "mongodb://127.0.0.1:9/eventhunting",
        "EVENTHUNTING_JWT_SECRET": secrets.token_urlsafe(32),
        **extra,
    }
    finished = subprocess.run(
        [sys.executable, "-m", "eventhunting.cli", "worker", "mailer"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 2
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1, finished.stderr
    assert named in lines[0]
