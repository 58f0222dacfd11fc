"""Server-rendered pages for people: one jinja2 environment, autoescaped, nothing from elsewhere."""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from litestar import Response

# Pages load nothing from other sites: scripts, styles and images come from this server.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline';"
    " script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@cache
def environment() -> Environment:
    return Environment(
        loader=PackageLoader("eventhunting.api", "templates"),
        autoescape=select_autoescape(default=True),
        auto_reload=False,
    )


def render_page(template: str, *, status_code: int = 200, **context: Any) -> Response[str]:
    """An HTML page from `templates/<template>`, with the pages' security headers."""
    html = environment().get_template(template).render(**context)
    return Response(
        html,
        status_code=status_code,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )
