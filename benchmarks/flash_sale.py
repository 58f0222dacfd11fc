"""Flash-sale benchmark: 10,000 buyers try once, all at the same moment, for 1,000 tickets.

Reports the time to sell out, the share sold (must be 1.0), tickets oversold (must be 0) and
unexpected errors (anything but 201 and 409 `sold_out`; must be 0), read back from the
inventory counters and the order streams after the run.

    python -m benchmarks.flash_sale              # 10,000 buyers, 1,000 tickets, 256 connections
    python -m benchmarks.flash_sale --smoke      # 500 buyers, 50 tickets
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from benchmarks.harness import (
    BenchSystem,
    bench_services,
    machine_description,
    on_sale_event,
    quantiles_ms,
    running_bench_system,
)
from benchmarks.load import build_request, read_response
from eventhunting.store import keys
from eventhunting.store.counters import inventory_counter
from tests.support.accounts import mint_buyers


async def flash(
    system: BenchSystem, *, buyers: int, tickets: int, connections: int
) -> dict[str, object]:
    services = await bench_services(system)
    try:
        tokens = await mint_buyers(services, buyers)
        event_id, ticket_type_id = await on_sale_event(services, quantity=tickets)
        body = json.dumps(
            {"event_id": event_id, "items": [{"ticket_type_id": ticket_type_id, "quantity": 1}]},
            separators=(",", ":"),
        ).encode()
        url = system.api_url + "/api/v1/orders"
        requests = [
            build_request("POST", url, body=body, headers={"Authorization": f"Bearer {token}"})
            for token in tokens
        ]
        host, port = url.split("//")[1].split("/")[0].split(":")
        # Every connection is open before the sale starts, as buyers waiting on the page.
        streams = [await asyncio.open_connection(host, int(port)) for _ in range(connections)]
        queue = list(reversed(requests))
        latencies: list[float] = []
        outcomes: dict[str, int] = {}
        sold_out_at: list[float] = []
        placed_order_ids: list[str] = []
        start = asyncio.Event()

        async def buyer_connection(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            await start.wait()
            while queue:
                payload = queue.pop()
                sent = time.perf_counter()
                writer.write(payload)
                status, response = await read_response(reader)
                done = time.perf_counter()
                latencies.append(done - sent)
                if status == 201:
                    outcome = "201"
                    placed_order_ids.append(json.loads(response)["id"])
                    if len(placed_order_ids) == tickets:
                        sold_out_at.append(done)
                else:
                    outcome = f"{status} {json.loads(response).get('code', '?')}"
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
            writer.close()

        tasks = [asyncio.create_task(buyer_connection(r, w)) for r, w in streams]
        began = time.perf_counter()
        start.set()
        await asyncio.gather(*tasks)
        finished = time.perf_counter()

        partition = keys.partition_of(event_id, services.settings.sales.partitions)
        name = inventory_counter(ticket_type_id)
        counters = (await services.store.read_counters(partition, [name]))[name]
        held_in_streams = 0
        for order_id in placed_order_ids:
            order = await services.orders.get(order_id)
            held_in_streams += order.ticket_count
    finally:
        await services.close()

    taken = counters.get("held", 0) + counters.get("sold", 0)
    expected = {"201", "409 sold_out"}
    p50, p99 = quantiles_ms(latencies)
    return {
        "machine": machine_description(),
        "buyers": buyers,
        "tickets": tickets,
        "connections": connections,
        "seconds_to_sell_out": (sold_out_at[0] - began) if sold_out_at else None,
        "seconds_total": finished - began,
        "requests_per_second": buyers / (finished - began),
        "p50_ms": p50,
        "p99_ms": p99,
        "share_sold": taken / tickets,
        "oversold": max(0, taken - tickets),
        "orders_placed": len(placed_order_ids),
        "tickets_in_order_streams": held_in_streams,
        "counters": counters,
        "outcomes": outcomes,
        "unexpected_errors": sum(n for k, n in outcomes.items() if k not in expected),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buyers", type=int, default=10_000)
    parser.add_argument("--tickets", type=int, default=1_000)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--fsync", choices=["always", "everysec", "no"], default="always")
    parser.add_argument("--smoke", action="store_true", help="500 buyers, 50 tickets")
    parser.add_argument("--json", type=Path, help="also write the results here")
    arguments = parser.parse_args(argv)
    if arguments.smoke:
        arguments.buyers, arguments.tickets, arguments.connections = 500, 50, 64

    with running_bench_system(fsync=arguments.fsync, hello=False) as system:
        report = asyncio.run(
            flash(
                system,
                buyers=arguments.buyers,
                tickets=arguments.tickets,
                connections=arguments.connections,
            )
        )
    for key, value in report.items():
        print(f"{key}: {value}")
    if arguments.json:
        arguments.json.write_text(json.dumps(report, indent=2))
    ok = (
        report["share_sold"] == 1.0
        and report["oversold"] == 0
        and report["unexpected_errors"] == 0
        and report["tickets_in_order_streams"] == arguments.tickets
    )
    if not ok:
        print("the flash sale broke an invariant", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
