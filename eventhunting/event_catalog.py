"""Renders docs/events.md, the public catalog of event types, from the event registry."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

import msgspec

import eventhunting.domain
from eventhunting.domain.events import EventRegistry, registry

HEADER = """\
# Event catalog

Generated from the event registry by `python -m eventhunting.event_catalog`; do not edit.
Analytics replay these events: names and fields are a public contract. Fields are added
freely; renaming or removing one needs a new schema version and an upcaster.

Every event is stored in an envelope: `event_id` (ULID), `stream`, `version` (1-based per
stream), `type`, `schema`, `occurred_at` (UTC), `data` (the fields below) and `meta`
(`command_id`, `correlation_id`, `causation_id`, `actor`).
"""


def register_all_events() -> EventRegistry:
    """Import every domain module so each registers its events."""
    for module in pkgutil.iter_modules(eventhunting.domain.__path__):
        importlib.import_module(f"eventhunting.domain.{module.name}")
    return registry


def type_name(info: msgspec.inspect.Type) -> str:
    match info:
        case msgspec.inspect.UnionType():
            return " | ".join(type_name(member) for member in info.types)
        case msgspec.inspect.ListType() | msgspec.inspect.VarTupleType():
            return f"list[{type_name(info.item_type)}]"
        case msgspec.inspect.DictType():
            return f"dict[{type_name(info.key_type)}, {type_name(info.value_type)}]"
        case msgspec.inspect.StructType():
            inner = ", ".join(f"{f.name}: {type_name(f.type)}" for f in info.fields)
            return f"{{{inner}}}"
        case msgspec.inspect.LiteralType():
            return " | ".join(repr(value) for value in info.values)
        case _:
            name = type(info).__name__.removesuffix("Type").lower()
            return {"none": "null", "datetime": "datetime (RFC 3339)"}.get(name, name)


def render(event_registry: EventRegistry) -> str:
    lines = [HEADER]
    by_stream: dict[str, list[str]] = {}
    for name, described in event_registry.by_name.items():
        by_stream.setdefault(described.stream_kind, []).append(name)
    for stream_kind in sorted(by_stream):
        lines.append(f"## `{stream_kind}-<id>` streams\n")
        for name in sorted(by_stream[stream_kind]):
            described = event_registry.by_name[name]
            lines.append(f"### {name} (schema {described.schema})\n")
            if described.description:
                lines.append(described.description + "\n")
            info = msgspec.inspect.type_info(described.payload)
            assert isinstance(info, msgspec.inspect.StructType)
            lines.append("| field | type | required |")
            lines.append("|---|---|---|")
            for field in info.fields:
                required = "yes" if field.required else "no"
                lines.append(f"| `{field.name}` | `{type_name(field.type)}` | {required} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=Path("docs/events.md"))
    arguments = parser.parse_args(argv)
    arguments.output.write_text(render(register_all_events()), encoding="utf-8")
    print(f"wrote {arguments.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
