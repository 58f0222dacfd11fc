"""The baseline: a bare Litestar hello-world app, served with the same settings as the API."""

from __future__ import annotations

from litestar import Litestar, get


@get("/")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


app = Litestar(route_handlers=[hello], debug=False)
