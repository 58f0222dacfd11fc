"""docs/events.md is the generated catalog of event types and must match the registry."""

from __future__ import annotations

from pathlib import Path

from eventhunting.event_catalog import register_all_events, render

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def test_events_doc_matches_the_registry() -> None:
    expected = render(register_all_events())
    assert DOC.read_text(encoding="utf-8") == expected, (
        "docs/events.md is stale: run `python -m eventhunting.event_catalog`"
    )


def test_every_registered_event_is_past_tense_and_documented() -> None:
    event_registry = register_all_events()
    for name, described in event_registry.by_name.items():
        assert name.isidentifier(), name
        assert name[0].isupper(), name
        assert name.endswith(("ed", "Sent", "In", "Paid")), f"{name} is not past tense"
        assert described.description, f"{name} needs a docstring"
