"""IPN benchmark: VNPAY IPN latency at a fixed arrival rate, idle and beside reserve load.

Every IPN is VNPAY's signed success for an order whose payment was started (so each one
records a payment, pays the order, issues its invoice and writes the append through to
MongoDB before answering `00`), sent on a fixed schedule (open loop): request n leaves at
start + n / rate whatever happened to the ones before, and its latency is timed from that
scheduled moment, so a stalled server or a late client is counted, never hidden.

Two phases at the same rate in the same run: idle (IPNs alone), then under load (the
`benchmarks.reserve` load, `POST /api/v1/orders` from 64 closed-loop connections in
another process, running through the whole phase). The system is the reserve benchmark's:
one `eventhunting api` process (uvicorn, uvloop, httptools), a private Redis with
`appendfsync always`, and the MongoDB stand-in.

    python -m benchmarks.ipn                  # 100 IPN/s, 10 s idle, 10 s beside the load
    python -m benchmarks.ipn --events 500     # the paid orders spread over 500 events
    python -m benchmarks.ipn --ipn-api separate   # IPNs to a second API process
    python -m benchmarks.ipn --smoke          # a few seconds, for CI
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import multiprocessing
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.harness import (
    BenchSystem,
    bench_services,
    machine_description,
    on_sale_event,
    quantiles_ms,
    running_bench_system,
)
from benchmarks.load import build_request, new_event_loop, read_response
from benchmarks.reserve import order_load, prepare
from eventhunting.domain.orders import RequestedItem
from eventhunting.payments.vnpay import format_vnpay_time
from eventhunting.payments.vnpay_signing import signed_query_string
from tests.support.servers import free_port, wait_for_port
from tests.support.system import stop_process

TARGET_P99_MS = 50.0
IPN_PATH = "/api/v1/payments/vnpay/ipn"
TMN_CODE = "BENCHIPN"
# Connections opened before a phase; more are opened (and timed) only if all are busy.
OPEN_CONNECTIONS = 16
# How long the reserve load runs before the loaded phase starts, and after it ends.
LOAD_RAMP_SECONDS = 1.5
LOAD_TAIL_SECONDS = 1.0
# IPNs sent (and not timed) before the idle phase: imports, pools, script cache.
WARMUP_SECONDS = 1.0
PREPARE_CONCURRENCY = 32


@dataclass
class Phase:
    name: str
    rate: float
    sent: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    late_send_max_ms: float
    """How far behind its schedule the client sent its latest request (client lag)."""
    answers: dict[str, int] = field(default_factory=dict)
    """HTTP status and RspCode of every answer; all should be `200 00`."""
    resent: int = 0
    """Requests sent again because the server had closed their idle connection."""

    @property
    def errors(self) -> int:
        return sum(count for answer, count in self.answers.items() if answer != "200 00")


async def started_payments(system: BenchSystem, count: int, events: int) -> list[tuple[str, int]]:
    """`count` pending orders of one ticket each, each with a started VNPAY payment, spread
    round-robin over `events` events (one invoice series each): (txn_ref, amount) pairs,
    as VNPAY would report them back."""
    services = await bench_services(system)
    try:
        on_sale = [
            await on_sale_event(services, quantity=count // events + 1) for _ in range(events)
        ]
        run = uuid.uuid4().hex[:8]
        gate = asyncio.Semaphore(PREPARE_CONCURRENCY)

        async def one(number: int) -> tuple[str, int]:
            buyer_id = f"ipn-buyer-{run}-{number}"
            event_id, ticket_type_id = on_sale[number % events]
            async with gate:
                placement = await services.orders.place(
                    buyer_id=buyer_id,
                    event_id=event_id,
                    items=[RequestedItem(ticket_type_id=ticket_type_id, quantity=1)],
                )
                link = await services.payments.start(
                    placement.order.id, buyer_id=buyer_id, client_ip="203.0.113.9"
                )
            return link.txn_ref, placement.order.total_amount

        return list(await asyncio.gather(*(one(n) for n in range(count))))
    finally:
        await services.close()


def ipn_requests(api_url: str, payments: list[tuple[str, int]], hash_secret: str) -> list[bytes]:
    """VNPAY's signed success IPN for each payment, as raw HTTP GET requests."""
    pay_date = format_vnpay_time(datetime.now(UTC))
    requests = []
    for number, (txn_ref, amount) in enumerate(payments):
        query = signed_query_string(
            {
                "vnp_TmnCode": TMN_CODE,
                "vnp_Amount": str(amount * 100),
                "vnp_BankCode": "NCB",
                "vnp_BankTranNo": f"VNP{20_000_000 + number}",
                "vnp_CardType": "ATM",
                "vnp_PayDate": pay_date,
                "vnp_OrderInfo": f"Thanh toan don hang {txn_ref[:-2]}",
                "vnp_TransactionNo": str(20_000_000 + number),
                "vnp_ResponseCode": "00",
                "vnp_TransactionStatus": "00",
                "vnp_TxnRef": txn_ref,
            },
            hash_secret,
        )
        requests.append(build_request("GET", f"{api_url}{IPN_PATH}?{query}"))
    return requests


def rsp_code(body: bytes) -> str:
    try:
        return str(json.loads(body).get("RspCode", "?"))
    except ValueError:
        return "?"


async def open_loop(name: str, api_url: str, requests: list[bytes], rate: float) -> Phase:
    """Send `requests` at `rate` per second on schedule; latency from each scheduled time."""
    parts = urlsplit(api_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    # Used least recently used first, so none idles past the server's keep-alive timeout.
    idle = deque([await asyncio.open_connection(host, port) for _ in range(OPEN_CONNECTIONS)])
    latencies: list[float] = []
    answers: Counter[str] = Counter()
    late_by = 0.0
    resent = 0

    async def send(payload: bytes, scheduled: float) -> None:
        nonlocal resent
        reader, writer = idle.popleft() if idle else await asyncio.open_connection(host, port)
        writer.write(payload)
        try:
            status, body = await read_response(reader)
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            if isinstance(error, asyncio.IncompleteReadError) and error.partial:
                raise
            # The server closed the connection before answering (an idle keep-alive one):
            # send again on a new connection, as HTTP clients do with a GET; the time counts.
            writer.close()
            resent += 1
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(payload)
            status, body = await read_response(reader)
        latencies.append(time.perf_counter() - scheduled)
        answers[f"{status} {rsp_code(body)}"] += 1
        idle.append((reader, writer))

    in_flight = []
    start = time.perf_counter() + 0.05
    for number, payload in enumerate(requests):
        scheduled = start + number / rate
        wait = scheduled - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        late_by = max(late_by, time.perf_counter() - scheduled)
        in_flight.append(asyncio.create_task(send(payload, scheduled)))
    await asyncio.gather(*in_flight)
    for _, writer in idle:
        writer.close()
    p50, p99 = quantiles_ms(latencies)
    return Phase(
        name=name,
        rate=rate,
        sent=len(requests),
        p50_ms=p50,
        p99_ms=p99,
        max_ms=max(latencies, default=0.0) * 1000,
        late_send_max_ms=late_by * 1000,
        answers=dict(answers),
        resent=resent,
    )


@dataclass(frozen=True)
class Cost:
    """What one IPN costs, counted over the idle phase (nothing else runs then)."""

    redis_calls_per_ipn: dict[str, float]
    """Redis commands per IPN by name (INFO commandstats; a script's own calls are counted
    too, under their names, beside its `evalsha`)."""
    server_cpu_ms_per_ipn: float
    """CPU time (user + system) of the API process serving the IPNs."""


def redis_commands(redis_url: str) -> Counter[str]:
    """Commands Redis has executed so far, by name (INFO commandstats)."""
    import redis as sync_redis

    client = sync_redis.Redis.from_url(redis_url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return Counter(
        {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def running_ipn_api(system: BenchSystem, *, separate: bool) -> Iterator[tuple[str, int]]:
    """Where the IPNs go: the API under load, or (`separate`) the payments-only API process
    (`eventhunting api --only payments`) on the same Redis and MongoDB, as deployed when
    VNPAY's IPN URL names it."""
    if not separate:
        yield system.api_url, system.processes[0].pid
        return
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eventhunting.cli",
            "api",
            "--only",
            "payments",
            "--port",
            str(port),
        ],
        env=system.environment,
    )
    try:
        wait_for_port(port, timeout=30, process=process)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        stop_process(process)


async def measure(
    arguments: argparse.Namespace, client: str, hash_secret: str
) -> dict[str, object]:
    overrides = {
        "EVENTHUNTING_VNPAY_TMN_CODE": TMN_CODE,
        "EVENTHUNTING_VNPAY_HASH_SECRET": hash_secret,
    }
    rate, seconds = arguments.rate, arguments.seconds
    per_phase = round(rate * seconds)
    warmup = round(rate * WARMUP_SECONDS)
    with (
        running_bench_system(fsync=arguments.fsync, hello=False, overrides=overrides) as system,
        running_ipn_api(system, separate=arguments.ipn_api == "separate") as (ipn_url, ipn_pid),
        ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):
        loop = asyncio.get_running_loop()
        # Start the load process (and its imports) now, so the load starts when asked to.
        await loop.run_in_executor(pool, os.getpid)
        tokens, body = await prepare(system.environment, arguments.buyers)
        payments = await started_payments(system, warmup + 2 * per_phase, arguments.events)
        requests = ipn_requests(ipn_url, payments, hash_secret)
        await open_loop("warmup", ipn_url, requests[:warmup], rate)
        redis_url = system.environment["EVENTHUNTING_REDIS_URL"]
        commands_before, cpu_before = redis_commands(redis_url), cpu_seconds(ipn_pid)
        idle = await open_loop("idle", ipn_url, requests[warmup:][:per_phase], rate)
        commands = redis_commands(redis_url) - commands_before
        commands["info"] -= 1
        cost = Cost(
            redis_calls_per_ipn={
                name: round(calls / idle.sent, 2)
                for name, calls in sorted(commands.items())
                if calls > 0
            },
            server_cpu_ms_per_ipn=(cpu_seconds(ipn_pid) - cpu_before) * 1000 / idle.sent,
        )
        load = loop.run_in_executor(
            pool,
            functools.partial(
                order_load,
                client,
                system.api_url,
                tokens,
                body,
                connections=arguments.connections,
                # Whole seconds: wrk takes no fractions.
                seconds=math.ceil(LOAD_RAMP_SECONDS + seconds + LOAD_TAIL_SECONDS),
            ),
        )
        await asyncio.sleep(LOAD_RAMP_SECONDS)
        loaded = await open_loop(
            "under reserve load", ipn_url, requests[warmup + per_phase :], rate
        )
        reserve = await load
    ratio = loaded.p99_ms / idle.p99_ms if idle.p99_ms else 0.0
    return {
        "machine": machine_description(),
        "client": client,
        "connections": arguments.connections,
        "redis_appendfsync": arguments.fsync,
        "ipn_rate": rate,
        "events": arguments.events,
        "ipn_api": arguments.ipn_api,
        "seconds_per_phase": seconds,
        "idle": {**asdict(idle), "errors": idle.errors},
        "loaded": {**asdict(loaded), "errors": loaded.errors},
        "reserve": asdict(reserve),
        "cost": asdict(cost),
        "load_average": os.getloadavg(),
        "p99_ratio_loaded_to_idle": ratio,
        "targets": {"p99_ms_under_load": TARGET_P99_MS},
        "met": loaded.p99_ms <= TARGET_P99_MS,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="IPN calls per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument(
        "--events",
        type=int,
        default=1,
        help="events the paid orders belong to (1: every payment of a sale takes the next"
        " number of one invoice series, as in a flash sale)",
    )
    parser.add_argument(
        "--ipn-api",
        choices=["shared", "separate"],
        default="shared",
        help="IPNs to the API process under load (shared) or to a second API process",
    )
    parser.add_argument("--connections", type=int, default=64, help="reserve load connections")
    parser.add_argument("--buyers", type=int, default=2_000, help="reserve load buyers")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--fsync", choices=["always", "everysec", "no"], default="always")
    parser.add_argument("--smoke", action="store_true", help="a few seconds; checks it runs")
    parser.add_argument("--json", type=Path, help="also write the results here")
    arguments = parser.parse_args(argv)
    if arguments.smoke:
        arguments.rate, arguments.seconds, arguments.buyers = 20.0, 2.0, 100
    client = arguments.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"

    loop = new_event_loop()
    try:
        report = loop.run_until_complete(measure(arguments, client, secrets.token_hex(16)))
    finally:
        loop.close()

    idle, loaded, reserve = report["idle"], report["loaded"], report["reserve"]
    cost = report["cost"]
    assert isinstance(cost, dict)
    assert isinstance(idle, dict)
    assert isinstance(loaded, dict)
    assert isinstance(reserve, dict)
    print(f"machine: {report['machine']}")
    print(
        f"IPN: {arguments.rate:g}/s open loop, {arguments.seconds:g} s per phase,"
        f" orders of {arguments.events} event(s), {arguments.ipn_api} API process;"
        f" load: {client}, {arguments.connections} connections,"
        f" redis appendfsync {arguments.fsync}"
    )
    print(f"{'':24}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'late ms':>10}  answers")
    for phase in (idle, loaded):
        print(
            f"{'IPN ' + phase['name']:24}{phase['p50_ms']:>10.2f}{phase['p99_ms']:>10.2f}"
            f"{phase['max_ms']:>10.2f}{phase['late_send_max_ms']:>10.2f}  {phase['answers']}"
            + (f", {phase['resent']} sent again" if phase["resent"] else "")
        )
    print(
        f"reserve load: {reserve['rate']:.0f} orders/s, p50 {reserve['p50_ms']:.1f} ms,"
        f" p99 {reserve['p99_ms']:.1f} ms, errors {reserve['errors'] or '-'}"
    )
    print(
        f"per IPN (idle phase): Redis {cost['redis_calls_per_ipn']},"
        f" {cost['server_cpu_ms_per_ipn']:.2f} ms CPU of the API process serving it;"
        f" load average at the end {report['load_average']}"
    )
    print(
        f"IPN p99 under load {loaded['p99_ms']:.1f} ms (target <= {TARGET_P99_MS:g} ms),"
        f" {report['p99_ratio_loaded_to_idle']:.2f}x the idle p99 {idle['p99_ms']:.1f} ms"
    )
    if arguments.json:
        arguments.json.write_text(json.dumps(report, indent=2))
    if idle["errors"] or loaded["errors"] or reserve["errors"]:
        print("the run had errors (IPN answers other than 00, or reserve errors)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
