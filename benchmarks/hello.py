"""The baseline: a bare Litestar hello-world app, served with the same settings as the API."""

from __future__ import annotations

import gc

from litestar import Litestar, get


@get("/")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


app = Litestar(route_handlers=[hello], debug=False)

# The same garbage-collector settings as `eventhunting api` (eventhunting.api.app.
# freeze_startup_heap), so the baseline has every advantage the API has.
gc.collect()
gc.freeze()
gc.set_threshold(7_000, *gc.get_threshold()[1:])
