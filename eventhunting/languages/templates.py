"""What every jinja2 environment of ours gets: `t(key, ...)`, and money and date filters.

A template renders with `language` in its context; `t` and the filters read it from there, so
templates never name a language. In an autoescaped (HTML) template `t` escapes the message
and its values (pass `Markup` to keep some markup, e.g. `<strong>`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jinja2
from jinja2.runtime import Context
from markupsafe import Markup

from eventhunting.languages.catalogs import Catalog, catalog
from eventhunting.languages.formats import format_event_time, format_local_date, format_vnd


def catalog_of(context: Context) -> Catalog:
    return catalog(context["language"])


@jinja2.pass_context
def translate(context: Context, key: str, /, **values: Any) -> str | Markup:
    messages = catalog_of(context)
    if context.eval_ctx.autoescape:
        return messages.markup(key, **values)
    return messages.text(key, **values)


@jinja2.pass_context
def vnd(context: Context, amount: int) -> str:
    return format_vnd(amount, context["language"])


@jinja2.pass_context
def event_time(context: Context, moment: datetime) -> str:
    return format_event_time(moment, context["language"])


@jinja2.pass_context
def local_date(context: Context, moment: datetime) -> str:
    return format_local_date(moment, context["language"])


REFUND_REASONS = "mail.refund_completed.reasons"


@jinja2.pass_context
def refund_reason(context: Context, reason: str) -> str:
    """A reason the system gives (`event_cancelled`...) in the reader's language; an
    organizer's own words as written."""
    messages = catalog_of(context)
    key = f"{REFUND_REASONS}.{reason}"
    return messages.text(key) if key in messages.messages else reason


def strong(text: str) -> Markup:
    """`text`, escaped, in <strong>: a value to stress inside a translated HTML message."""
    return Markup("<strong>{}</strong>").format(text)


def install_languages(environment: jinja2.Environment) -> jinja2.Environment:
    environment.globals["t"] = translate
    environment.globals["strong"] = strong
    environment.filters["vnd"] = vnd
    environment.filters["event_time"] = event_time
    environment.filters["local_date"] = local_date
    environment.filters["refund_reason"] = refund_reason
    return environment
