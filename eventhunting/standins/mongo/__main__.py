"""Run the MongoDB stand-in: `python -m eventhunting.standins.mongo --port N`."""

from eventhunting.standins.mongo.cli import main

raise SystemExit(main())
