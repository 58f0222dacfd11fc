"""MongoDB's `failCommand` test failpoint, set with the `configureFailPoint` command."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eventhunting.standins.mongo.errors import BAD_VALUE, CommandError


@dataclass
class FailAction:
    """What to do instead of (or before) running one command."""

    close_connection: bool = False
    block_seconds: float = 0.0
    error_code: int | None = None
    # When given (even empty), the reply carries exactly these labels instead of computed ones.
    error_labels: list[str] | None = None
    write_concern_error: dict[str, Any] | None = None


@dataclass
class FailCommand:
    mode: str = "off"
    remaining: int = 0
    skip: int = 0
    entered: int = 0
    commands: frozenset[str] = frozenset()
    app_name: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def configure(self, mode: Any, data: dict[str, Any]) -> int:
        """Apply a configureFailPoint request; return how often the point fired before."""
        previous = self.entered
        if mode == "off":
            self.mode, self.remaining, self.skip = "off", 0, 0
        elif mode == "alwaysOn":
            self.mode = "alwaysOn"
        elif isinstance(mode, dict) and "times" in mode:
            self.mode, self.remaining = "times", int(mode["times"])
            if self.remaining <= 0:
                self.mode = "off"
        elif isinstance(mode, dict) and "skip" in mode:
            self.mode, self.skip = "skip", int(mode["skip"])
        else:
            raise CommandError(BAD_VALUE, f"unsupported failpoint mode: {mode!r}")
        if self.mode != "off":
            names = data.get("failCommands")
            if not isinstance(names, list) or not names:
                raise CommandError(BAD_VALUE, "failCommand requires a non-empty 'failCommands'")
            self.commands = frozenset(str(name) for name in names)
            self.app_name = data.get("appName")
            self.data = dict(data)
        self.entered = 0
        return previous

    def trigger(
        self, command_name: str, app_name: str | None, *, takes_write_concern: bool
    ) -> FailAction | None:
        if self.mode == "off" or command_name not in self.commands:
            return None
        if self.app_name is not None and self.app_name != app_name:
            return None
        data = self.data
        acts_before = (
            "errorCode" in data
            or bool(data.get("closeConnection"))
            or bool(data.get("blockConnection"))
        )
        if not acts_before and not ("writeConcernError" in data and takes_write_concern):
            # MongoDB only fires a failpoint that has something to do for this command.
            return None
        if self.mode == "skip":
            if self.skip > 0:
                self.skip -= 1
                return None
        elif self.mode == "times":
            self.remaining -= 1
            if self.remaining <= 0:
                self.mode = "off"
        self.entered += 1
        labels = data.get("errorLabels")
        return FailAction(
            close_connection=bool(data.get("closeConnection", False)),
            block_seconds=(
                float(data.get("blockTimeMS", 0)) / 1000 if data.get("blockConnection") else 0.0
            ),
            error_code=int(data["errorCode"]) if "errorCode" in data else None,
            error_labels=[str(label) for label in labels] if isinstance(labels, list) else None,
            write_concern_error=(data.get("writeConcernError") if takes_write_concern else None),
        )
