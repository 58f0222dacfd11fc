"""Maintenance commands (restore, replay) wired to the composition root's services."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from eventhunting.replay_jobs import ReplayJobFailed, replay_in_jobs
from eventhunting.store.restore import RedisNotEmpty, restore

if TYPE_CHECKING:
    from eventhunting.settings import StoreSettings


async def restore_command(settings: StoreSettings, *, force: bool) -> int:
    """`eventhunting restore [--force]`: rebuild Redis from the MongoDB archive.

    The read models are then rebuilt from the restored logs: an event the projector applied
    but the archiver never copied is gone from the store, so it must not stay in a read model.
    """
    from eventhunting.projections.registry import load_projections
    from eventhunting.projections.replay import replay
    from eventhunting.store_clients import connect_store

    services = connect_store(settings)
    try:
        report = await restore(
            services.redis, services.database, settings.sales.partitions, force=force
        )
        print(
            f"restored {report.events} events into {report.partitions} partitions",
            file=sys.stderr,
        )
        replayed = await replay(
            services.database,
            load_projections(),
            redis=services.redis,
            partitions=settings.sales.partitions,
        )
    except RedisNotEmpty as error:
        print(f"eventhunting restore: {error} (use --force)", file=sys.stderr)
        return 1
    finally:
        await services.close()
    names = ", ".join(replayed.projections)
    print(f"rebuilt {names} from {replayed.events} restored events", file=sys.stderr)
    return 0


async def replay_command(
    settings: StoreSettings, *, names: Sequence[str] | None, from_archive: bool, jobs: int = 1
) -> int:
    """`eventhunting replay [--projection NAME] [--from-archive] [--jobs N]`."""
    from eventhunting.projections.registry import load_projections
    from eventhunting.store_clients import connect_store

    try:
        load_projections(names)
    except LookupError as error:
        print(f"eventhunting replay: {error}", file=sys.stderr)
        return 2
    services = connect_store(settings)
    try:
        report = await replay_in_jobs(
            settings, services, names=names, from_archive=from_archive, jobs=jobs
        )
    except ReplayJobFailed as error:
        print(f"eventhunting replay: {error}", file=sys.stderr)
        return 1
    finally:
        await services.close()
    names_done = ", ".join(report.projections) or "no projections"
    print(f"replayed {report.events} events into {names_done}", file=sys.stderr)
    return 0
