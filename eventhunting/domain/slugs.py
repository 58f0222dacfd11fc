"""Vietnamese-aware slugs: case, diacritics and punctuation folded away."""

from __future__ import annotations

import re
import unicodedata

# đ/Đ is a letter of its own in Unicode, not d plus a combining mark, so NFD keeps it.
_LETTERS_WITHOUT_DECOMPOSITION = str.maketrans({"đ": "d", "Đ": "d"})
_NOT_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")


def fold(text: str) -> str:
    """Lower case ASCII: NFD, combining marks dropped, đ -> d."""
    decomposed = unicodedata.normalize("NFD", text.translate(_LETTERS_WITHOUT_DECOMPOSITION))
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    return stripped.lower()


def slugify(text: str) -> str:
    """`Đà Nẵng` -> `da-nang`: folded, every run of other characters becomes one hyphen."""
    return _NOT_ALPHANUMERIC.sub("-", fold(text)).strip("-")
