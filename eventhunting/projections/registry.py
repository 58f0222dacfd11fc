"""The projections the projector runs and `eventhunting replay` rebuilds, by name."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from eventhunting.projections.base import Projection

# name -> "module:ProjectionClass"; each feature adds its read models here.
PROJECTIONS: dict[str, str] = {
    "accounts": "eventhunting.projections.accounts:AccountsProjection",
    "catalog": "eventhunting.projections.catalog:CatalogProjection",
    "orders": "eventhunting.projections.orders:OrdersProjection",
}


def load_projections(names: Sequence[str] | None = None) -> list[Projection]:
    """Instances of the named projections (all registered ones when `names` is None)."""
    chosen = list(PROJECTIONS) if names is None else list(names)
    unknown = [name for name in chosen if name not in PROJECTIONS]
    if unknown:
        known = ", ".join(sorted(PROJECTIONS)) or "none"
        raise LookupError(f"unknown projection {unknown[0]!r}; known: {known}")
    projections: list[Projection] = []
    for name in chosen:
        module_name, _, class_name = PROJECTIONS[name].partition(":")
        projection_class: type[Projection] = getattr(
            importlib.import_module(module_name), class_name
        )
        projections.append(projection_class())
    return projections
