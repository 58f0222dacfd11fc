"""Development and test stand-ins for external systems (never used in production)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

StandinMain = Callable[[Sequence[str]], int]

# name -> module whose `main(argv) -> int` serves the stand-in
STANDIN_MODULES: dict[str, str] = {
    "mongo": "eventhunting.standins.mongo.__main__",
    "smtp": "eventhunting.standins.smtp.__main__",
    "vnpay": "eventhunting.standins.vnpay.__main__",
}


def run_standin(name: str, argv: Sequence[str]) -> int:
    """Run a stand-in by name; say so clearly when it does not exist yet."""
    module_name = STANDIN_MODULES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and module_name.startswith(error.name):
            print(f"eventhunting: the {name} stand-in is not available yet", file=sys.stderr)
            return 2
        if error.name is not None and not error.name.startswith("eventhunting"):
            # The stand-ins' own libraries come with the extra, never with a production install.
            print(
                f"eventhunting: the {name} stand-in needs {error.name.partition('.')[0]!r}:"
                " pip install 'eventhunting[standins]'",
                file=sys.stderr,
            )
            return 2
        raise
    main: StandinMain = module.main
    return main(list(argv))
