"""Run the SMTP sink: `python -m eventhunting.standins.smtp --smtp-port N --http-port M`."""

from eventhunting.standins.smtp.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
