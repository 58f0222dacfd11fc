"""The message catalogs (`vi.toml`, `en.toml`) that every page, page script and mail reads."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any, Literal

from markupsafe import Markup, escape

Language = Literal["vi", "en"]
LANGUAGES: tuple[Language, ...] = ("vi", "en")
DEFAULT_LANGUAGE: Language = "vi"
"""Buyers are in Vietnam and VNPAY's own pages default to Vietnamese: a reader whose language
is unknown (or one we have no catalog for) reads Vietnamese."""


class Catalog:
    """One language's messages by dotted key (`mail.tickets.subject`), and lists of names.

    A message is a `str.format` pattern (`Xin chào {name},`); `text` fills it in. In HTML,
    `markup` escapes the pattern and every value except `Markup` ones, so a catalog never
    carries markup and a buyer's name never becomes any.
    """

    def __init__(self, language: Language, messages: Mapping[str, str | list[str]]) -> None:
        self.language = language
        self.messages = dict(messages)

    def text(self, key: str, /, **values: object) -> str:
        return self.message(key).format(**values)

    def markup(self, key: str, /, **values: object) -> Markup:
        return escape(self.message(key)).format(**values)

    def message(self, key: str) -> str:
        message = self.messages[key]
        if not isinstance(message, str):
            raise TypeError(f"{key} is a list of names, not a message")
        return message

    def names(self, key: str) -> list[str]:
        names = self.messages[key]
        if isinstance(names, str):
            raise TypeError(f"{key} is a message, not a list of names")
        return names

    def section(self, prefix: str) -> dict[str, str | list[str]]:
        """The messages under `prefix.`, keyed by the rest of their key (for page scripts)."""
        start = prefix + "."
        return {
            key.removeprefix(start): message
            for key, message in self.messages.items()
            if key.startswith(start)
        }


def flattened(table: Mapping[str, Any], prefix: str = "") -> dict[str, str | list[str]]:
    messages: dict[str, str | list[str]] = {}
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            messages.update(flattened(value, key + "."))
        elif isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(item, str) for item in value)
        ):
            messages[key] = value
        else:
            raise TypeError(f"{key}: a message is text or a list of texts")
    return messages


@cache
def catalog(language: Language) -> Catalog:
    """The catalog of `language`, read once from the package."""
    text = resources.files("eventhunting.languages").joinpath(f"{language}.toml").read_text("utf-8")
    return Catalog(language, flattened(tomllib.loads(text)))
