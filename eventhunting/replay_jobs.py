"""`eventhunting replay --jobs N`: the partitions of a replay spread over processes.

A spawned job imports this module alone (and what it needs to connect and replay), so it
starts in a fraction of a second.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from eventhunting.store_clients import StoreClients, connect_store

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess
    from multiprocessing.sharedctypes import Synchronized

    from eventhunting.projections.replay import ReplayReport
    from eventhunting.settings import StoreSettings

JOB_POLL_SECONDS = 0.2
"""How often the replay waits for its jobs' messages before it checks that they still run."""


class ReplayJobFailed(RuntimeError):
    """A replay job stopped before it applied what it took: nothing was swapped in."""


async def replay_in_jobs(
    settings: StoreSettings,
    services: StoreClients,
    *,
    names: Sequence[str] | None,
    from_archive: bool,
    jobs: int,
    progress: TextIO | None = None,
) -> ReplayReport:
    """Rebuild the projections `names` (all when None) with the partitions spread over
    `jobs` processes, then swap the result in.

    Partitions are independent (an event's orders, tickets and check-ins share its
    partition, and the projector applies partitions concurrently too), so each job replays
    whole partitions into the scratch database: this process and `jobs - 1` spawned ones
    (connecting with `settings`) each take the next partition not yet taken when they are
    done with one, so a job that started later, or got longer partitions, takes fewer. With
    one job, every partition is one share (the archive is read with one query). The
    collections are swapped in only when every job has applied what it took; if one fails,
    nothing is.
    """
    from eventhunting.projections.registry import load_projections
    from eventhunting.projections.replay import (
        ReplayReport,
        events_to_replay,
        prepare_scratch,
        replay_share,
        swap_in,
    )
    from eventhunting.store.progress import ProgressBar

    projections = load_projections(names)
    partitions = settings.sales.partitions
    database, redis = services.database, services.redis
    total = await events_to_replay(database, redis, partitions, from_archive=from_archive)
    await prepare_scratch(database, projections)
    bar = ProgressBar("replay", total, stream=progress)
    jobs = max(1, min(jobs, partitions))
    shares = ((0, partitions),) if jobs == 1 else tuple((p, p + 1) for p in range(partitions))
    context = multiprocessing.get_context("spawn")
    next_share = context.Value("i", 0)
    messages: multiprocessing.Queue[tuple[Any, ...]] = context.Queue()
    job = ReplayJob(
        settings=settings,
        names=None if names is None else tuple(names),
        shares=shares,
        next_share=next_share,
        from_archive=from_archive,
        messages=messages,
    )
    children: list[BaseProcess] = [
        context.Process(
            target=replay_job,
            args=(job,),
            name=f"replay-job-{number}",
            daemon=True,
        )
        for number in range(1, jobs)
    ]
    for child in children:
        child.start()
    reports: list[ReplayReport] = []

    def receive(message: tuple[Any, ...]) -> None:
        kind, *fields = message
        if kind == "read":
            bar.advance(fields[0])
        elif kind == "done":
            reports.append(ReplayReport(tuple(fields[0]), fields[1], dict(fields[2])))
        else:
            raise ReplayJobFailed(f"{fields[0]} failed: {fields[1]}")

    def advance(read: int) -> None:
        bar.advance(read)
        while True:
            try:
                receive(messages.get_nowait())
            except queue.Empty:
                return

    try:
        try:
            reports.append(
                await replay_share(
                    database,
                    projections,
                    shares_taken(shares, next_share),
                    redis=redis,
                    from_archive=from_archive,
                    advance=advance,
                )
            )
        except ReplayJobFailed:
            raise
        except Exception as error:
            raise ReplayJobFailed(
                f"replay-job-0 failed: {type(error).__name__}: {error}"
            ) from error
        while len(reports) < jobs:
            try:
                receive(await asyncio.to_thread(messages.get, True, JOB_POLL_SECONDS))
            except queue.Empty:
                stopped = [c for c in children if c.exitcode not in (None, 0)]
                if stopped:
                    raise ReplayJobFailed(
                        f"{stopped[0].name} stopped with exit code {stopped[0].exitcode}"
                    ) from None
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
            child.join()
        messages.close()
    bar.finish()
    last_positions: dict[int, str] = {}
    for report in reports:
        last_positions.update(report.last_positions)
    await swap_in(database, projections, last_positions)
    return ReplayReport(
        projections=tuple(p.name for p in projections),
        events=sum(report.events for report in reports),
        last_positions=last_positions,
    )


def shares_taken(
    shares: Sequence[tuple[int, int]], next_share: Synchronized[int]
) -> Iterator[range]:
    """The shares this job takes: each time, the next one no job took yet."""
    while True:
        with next_share.get_lock():
            index = next_share.value
            next_share.value = index + 1
        if index >= len(shares):
            return
        yield range(*shares[index])


@dataclass(frozen=True)
class ReplayJob:
    """What a spawned job is given: how to connect, what to rebuild, where to take shares
    (partition ranges, the next one from `next_share`) and where to report."""

    settings: StoreSettings
    names: tuple[str, ...] | None
    shares: tuple[tuple[int, int], ...]
    next_share: Synchronized[int]
    from_archive: bool
    messages: multiprocessing.Queue[tuple[Any, ...]]


def replay_job(job: ReplayJob) -> None:
    """A replay job in a process of its own: it takes shares until none is left, reports
    each page read, then what it applied (or why it failed) on `job.messages`."""
    from eventhunting.structured_logging import configure_logging

    configure_logging(job.settings.log_level)
    name = multiprocessing.current_process().name
    try:
        asyncio.run(replay_job_shares(job))
    except BaseException as error:
        job.messages.put(("failed", name, f"{type(error).__name__}: {error}"))
        raise


async def replay_job_shares(job: ReplayJob) -> None:
    from eventhunting.projections.registry import load_projections
    from eventhunting.projections.replay import replay_share

    services = connect_store(job.settings)
    try:
        report = await replay_share(
            services.database,
            load_projections(job.names),
            shares_taken(job.shares, job.next_share),
            redis=services.redis,
            from_archive=job.from_archive,
            advance=lambda read: job.messages.put(("read", read)),
        )
    finally:
        await services.close()
    job.messages.put(("done", list(report.projections), report.events, report.last_positions))
