"""Run the MongoDB stand-in: `python -m eventhunting.standins.mongo --port N`."""

from eventhunting.standins.mongo.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
