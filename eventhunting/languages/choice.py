"""Which of our languages a reader gets: from a locale tag, or from a browser's Accept-Language."""

from __future__ import annotations

from eventhunting.languages.catalogs import DEFAULT_LANGUAGE, LANGUAGES, Language

# VNPAY names Vietnamese `vn`; everything else says `vi`.
ALIASES: dict[str, Language] = {"vn": "vi"}


def supported(tag: str) -> Language | None:
    """Our language for a tag's primary subtag (`en-US`, `en_GB` -> en; `vi`, `vn` -> vi)."""
    primary = tag.strip().replace("_", "-").split("-")[0].lower()
    if primary in ALIASES:
        return ALIASES[primary]
    for language in LANGUAGES:
        if primary == language:
            return language
    return None


def language_of(tag: str | None) -> Language:
    """A stored locale (a buyer's, VNPAY's `vn`/`en`) as one of our languages; Vietnamese
    when it is unknown or not one of ours."""
    return (supported(tag) if tag else None) or DEFAULT_LANGUAGE


def preferred_language(override: str | None, accept_language: str | None) -> Language:
    """A page's language: `?lang=` when it names one of ours, else the browser's most wanted
    of ours by Accept-Language quality (RFC 9110; `*` and others ignored), else Vietnamese."""
    if override:
        chosen = supported(override)
        if chosen is not None:
            return chosen
    best: tuple[float, int, Language] | None = None
    for position, item in enumerate((accept_language or "").split(",")):
        tag, _, parameters = item.partition(";")
        language = supported(tag) if tag.strip() and tag.strip() != "*" else None
        if language is None:
            continue
        quality = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        # The highest quality wins; among equals, the one listed first.
        if quality > 0 and (best is None or (quality, -position) > (best[0], best[1])):
            best = (quality, -position, language)
    return DEFAULT_LANGUAGE if best is None else best[2]
