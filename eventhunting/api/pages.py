"""Server-rendered pages for people: one jinja2 environment, autoescaped, nothing from elsewhere."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from litestar import Request, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from eventhunting.languages.catalogs import Language, catalog
from eventhunting.languages.choice import preferred_language
from eventhunting.languages.templates import install_languages

# Pages load nothing from other sites: scripts, styles and images come from this server, and
# no script is inline (page scripts are files under static/).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline';"
    " script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

STATIC_DIRECTORY = Path(__file__).with_name("static")
STATIC_PATH = "/static"
STATIC_MAX_AGE_SECONDS = 86_400
"""Pages name each static file with a digest of its content, so a changed file is a new URL."""


def static_url(name: str) -> str:
    """The URL of `static/<name>`, carrying a digest of its content so caches never serve an
    older version to a newer page."""
    return f"{STATIC_PATH}/{name}?v={_content_digest(name)}"


@cache
def _content_digest(name: str) -> str:
    return hashlib.sha256((STATIC_DIRECTORY / name).read_bytes()).hexdigest()[:12]


@cache
def environment() -> Environment:
    pages = Environment(
        loader=PackageLoader("eventhunting.api", "templates"),
        autoescape=select_autoescape(default=True),
        auto_reload=False,
    )
    pages.globals["static_url"] = static_url
    return install_languages(pages)


def page_language(request: Request[Any, Any, Any]) -> Language:
    """The reader's language: `?lang=vi|en` (also VNPAY's `vn`), else the browser's
    Accept-Language, else Vietnamese."""
    return preferred_language(
        request.query_params.get("lang"), request.headers.get("accept-language")
    )


def render_page(
    template: str,
    *,
    language: Language,
    script_texts: tuple[str, ...] = (),
    status_code: int = 200,
    **context: Any,
) -> Response[str]:
    """An HTML page from `templates/<template>` in `language`, with the pages' security
    headers; the catalog sections `script_texts` (after the shared `pages.script`) go into
    the page for its scripts (`static/page_text.js`)."""
    messages = catalog(language)
    script_text: dict[str, str | list[str]] = {}
    for section in ("pages.script", *script_texts):
        script_text.update(messages.section(section))
    html = (
        environment()
        .get_template(template)
        .render(language=language, script_text=script_text, **context)
    )
    return Response(
        html,
        status_code=status_code,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Content-Language": language,
            "Vary": "Accept-Language",
        },
    )


@get("/checkin", include_in_schema=False, sync_to_thread=False)
def checkin_page(request: Request[Any, Any, Any]) -> Response[str]:
    """Door staff's page: sign in, choose the event, scan or type ticket codes."""
    return render_page(
        "checkin.html",
        language=page_language(request),
        script_texts=("pages.checkin.script",),
    )


@get("/dashboard", include_in_schema=False, sync_to_thread=False)
def dashboard_page(request: Request[Any, Any, Any]) -> Response[str]:
    """Organizers' page: their events and one event's sales, refreshed while it is open."""
    return render_page(
        "dashboard.html",
        language=page_language(request),
        script_texts=("pages.dashboard.script",),
    )


PAGE_ROUTES: list[ControllerRouterHandler] = [
    checkin_page,
    dashboard_page,
    create_static_files_router(
        STATIC_PATH,
        directories=[STATIC_DIRECTORY],
        include_in_schema=False,
        cache_control=CacheControlHeader(public=True, max_age=STATIC_MAX_AGE_SECONDS),
    ),
]
"""The pages and the files they load (scripts, styles, vendored libraries); public, and left
out of the OpenAPI document: they are for people, not API clients."""
