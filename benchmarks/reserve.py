"""Reserve benchmark: POST /api/v1/orders beside a bare Litestar hello-world, in one run.

Each order is one item, by a signed-in buyer (many buyers, large capacity).

Both apps run as one uvicorn process with uvloop and httptools (the settings of
`eventhunting api`) in the same run, against a private Redis (AOF, appendfsync always, as in
production) and the MongoDB stand-in. The load generator runs on the same machine and
competes with the servers for CPU, so absolute numbers are pessimistic; the ratio is the
figure to watch.

    python -m benchmarks.reserve                 # 64 connections, 10 s per app, wrk if installed
    python -m benchmarks.reserve --smoke         # a few seconds, for CI
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.harness import (
    bench_services,
    machine_description,
    on_sale_event,
    quantiles_ms,
    running_bench_system,
)
from benchmarks.load import build_request, new_event_loop, run_load
from tests.support.accounts import mint_buyers

TARGET_RATIO = 0.40
TARGET_P99_MS = 50.0

WRK_SCRIPT = """\
-- Rotates buyers so every request is a different signed-in customer.
local tokens = {}
for line in io.lines("%(tokens)s") do tokens[#tokens + 1] = line end
local body = '%(body)s'
local counter = 0
request = function()
  counter = counter + 1
  local token = tokens[(counter %% #tokens) + 1]
  return wrk.format("POST", "/api/v1/orders",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end
"""


@dataclass
class Measurement:
    name: str
    requests: int
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]


def parse_wrk(name: str, output: str) -> Measurement:
    """Requests, duration, rate and latency percentiles from `wrk --latency` output."""

    def milliseconds(text: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]

    found = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", output)
    assert found, output
    requests = int(found.group(1))
    seconds = float(found.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[found.group(3)]
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    errors: dict[str, int] = {}
    if non_2xx:
        errors["non_2xx"] = int(non_2xx.group(1))
    if socket_errors:
        errors["socket"] = sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    return Measurement(
        name=name,
        requests=requests,
        seconds=seconds,
        rate=requests / seconds,
        p50_ms=milliseconds(p50.group(1)) if p50 else 0.0,
        p99_ms=milliseconds(p99.group(1)) if p99 else 0.0,
        errors=errors,
    )


def run_wrk(
    name: str, url: str, *, connections: int, seconds: float, script: Path | None
) -> Measurement:
    # wrk takes whole seconds only.
    duration = max(1, math.ceil(seconds))
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout
    return parse_wrk(name, output)


def run_python_client(
    name: str,
    url: str,
    requests: list[bytes],
    *,
    connections: int,
    seconds: float,
) -> Measurement:
    loop = new_event_loop()
    try:
        result = loop.run_until_complete(
            run_load(
                url,
                lambda n: requests[n % len(requests)],
                connections=connections,
                duration=seconds,
            )
        )
    finally:
        loop.close()
    p50, p99 = quantiles_ms(result.latencies)
    errors = {
        f"{status}:{code}": count
        for status, count in result.statuses.items()
        if status >= 300
        for code in [next(iter(result.codes), "?")]
    }
    return Measurement(name, result.requests, result.seconds, result.rate, p50, p99, errors)


def measure(
    name: str,
    client: str,
    url: str,
    *,
    connections: int,
    seconds: float,
    warmup_seconds: float,
    requests: list[bytes] | None = None,
    script: Path | None = None,
    measured: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> Measurement:
    """A warm-up run (imports, pools, script cache; not counted), then the measured one.

    `measured` is entered around the measured run alone (e.g. to read CPU counters).
    """

    def run(run_seconds: float) -> Measurement:
        if client == "wrk":
            return run_wrk(name, url, connections=connections, seconds=run_seconds, script=script)
        assert requests is not None
        return run_python_client(name, url, requests, connections=connections, seconds=run_seconds)

    if warmup_seconds > 0:
        run(warmup_seconds)
    with measured():
        return run(seconds)


def order_load(
    client: str,
    api_url: str,
    tokens: list[str],
    body: bytes,
    *,
    connections: int,
    seconds: float,
    warmup_seconds: float = 0.0,
    measured: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> Measurement:
    """The reserve load: `POST /api/v1/orders` of `body`, each request by the next buyer."""
    with tempfile.TemporaryDirectory() as scratch:
        script = None
        requests = None
        if client == "wrk":
            token_file = Path(scratch) / "tokens.txt"
            token_file.write_text("\n".join(tokens) + "\n")
            script = Path(scratch) / "reserve.lua"
            script.write_text(WRK_SCRIPT % {"tokens": token_file, "body": body.decode()})
        else:
            order_url = api_url + "/api/v1/orders"
            requests = [
                build_request(
                    "POST", order_url, body=body, headers={"Authorization": f"Bearer {t}"}
                )
                for t in tokens
            ]
        return measure(
            "POST /api/v1/orders",
            client,
            api_url,
            connections=connections,
            seconds=seconds,
            warmup_seconds=warmup_seconds,
            requests=requests,
            script=script,
            measured=measured,
        )


async def prepare(api_url_environment: dict[str, str], buyers: int) -> tuple[list[str], bytes]:
    from benchmarks.harness import BenchSystem

    services = await bench_services(BenchSystem("", None, api_url_environment))
    try:
        tokens = await mint_buyers(services, buyers)
        event_id, ticket_type_id = await on_sale_event(services, quantity=1_000_000)
    finally:
        await services.close()
    body = json.dumps(
        {"event_id": event_id, "items": [{"ticket_type_id": ticket_type_id, "quantity": 1}]},
        separators=(",", ":"),
    ).encode()
    return tokens, body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--buyers", type=int, default=2_000)
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--fsync", choices=["always", "everysec", "no"], default="always")
    parser.add_argument("--smoke", action="store_true", help="a few seconds; checks it runs")
    parser.add_argument("--json", type=Path, help="also write the results here")
    arguments = parser.parse_args(argv)
    if arguments.smoke:
        arguments.seconds, arguments.buyers = 2.0, 100
    client = arguments.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"

    # A short warm-up of each app (imports, connection pools, script cache) before its run.
    warmup_seconds = min(1.0, arguments.seconds / 5)
    with running_bench_system(fsync=arguments.fsync) as system:
        assert system.hello_url is not None
        tokens, body = asyncio.run(prepare(system.environment, arguments.buyers))
        hello = measure(
            "hello-world GET /",
            client,
            system.hello_url,
            connections=arguments.connections,
            seconds=arguments.seconds,
            warmup_seconds=warmup_seconds,
            requests=[build_request("GET", system.hello_url + "/")],
        )
        reserve = order_load(
            client,
            system.api_url,
            tokens,
            body,
            connections=arguments.connections,
            seconds=arguments.seconds,
            warmup_seconds=warmup_seconds,
        )

    ratio = reserve.rate / hello.rate if hello.rate else 0.0
    report = {
        "machine": machine_description(),
        "client": client,
        "connections": arguments.connections,
        "redis_appendfsync": arguments.fsync,
        "hello": asdict(hello),
        "reserve": asdict(reserve),
        "ratio": ratio,
        "targets": {"ratio": TARGET_RATIO, "p99_ms": TARGET_P99_MS},
        "met": ratio >= TARGET_RATIO and reserve.p99_ms <= TARGET_P99_MS,
    }
    print(f"machine: {report['machine']}")
    print(f"client: {client}, {arguments.connections} connections,", end=" ")
    print(f"redis appendfsync {arguments.fsync}")
    print(f"{'':24}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}  errors")
    for measured in (hello, reserve):
        print(
            f"{measured.name:24}{measured.rate:>10.0f}{measured.p50_ms:>10.2f}"
            f"{measured.p99_ms:>10.2f}  {measured.errors or '-'}"
        )
    print(
        f"ratio reserve/hello: {ratio:.2f} (target >= {TARGET_RATIO}),"
        f" p99 {reserve.p99_ms:.1f} ms (target <= {TARGET_P99_MS:g} ms)"
    )
    if arguments.json:
        arguments.json.write_text(json.dumps(report, indent=2))
    if reserve.errors:
        print("the reserve run had errors", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
