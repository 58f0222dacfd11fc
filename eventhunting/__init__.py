"""EventHunting: an event-sourced ticketing backend."""

__version__ = "0.1.0"
