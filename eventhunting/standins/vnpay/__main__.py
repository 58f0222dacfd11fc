"""Run the VNPAY stand-in: `python -m eventhunting.standins.vnpay --port N --tmn-code X ...`."""

from eventhunting.standins.vnpay.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
