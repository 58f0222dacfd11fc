"""The projections the projector runs and `eventhunting replay` rebuilds, by name."""

from __future__ import annotations

from collections.abc import Sequence

from eventhunting.projections.accounts import AccountsProjection
from eventhunting.projections.base import Projection
from eventhunting.projections.catalog import CatalogProjection
from eventhunting.projections.orders import OrdersProjection
from eventhunting.projections.sales import SalesProjection
from eventhunting.projections.tickets import TicketsProjection

# Every read model the projector keeps and `eventhunting replay` rebuilds, by its name.
PROJECTIONS: dict[str, type[Projection]] = {
    projection.name: projection
    for projection in (
        AccountsProjection,
        CatalogProjection,
        OrdersProjection,
        SalesProjection,
        TicketsProjection,
    )
}


def load_projections(names: Sequence[str] | None = None) -> list[Projection]:
    """Instances of the named projections (all registered ones when `names` is None)."""
    chosen = list(PROJECTIONS) if names is None else list(names)
    unknown = [name for name in chosen if name not in PROJECTIONS]
    if unknown:
        known = ", ".join(sorted(PROJECTIONS)) or "none"
        raise LookupError(f"unknown projection {unknown[0]!r}; known: {known}")
    return [PROJECTIONS[name]() for name in chosen]
