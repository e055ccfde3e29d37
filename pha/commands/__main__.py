"""`python -m pha.commands SUBCOMMAND ...`: the cluster commands without pha.cli (tests, debugging)."""
from __future__ import annotations

import importlib
import sys

from pha.commands.registry import COMMANDS


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in COMMANDS:
        names = ", ".join(sorted(COMMANDS))
        sys.exit(f"usage: python -m pha.commands SUBCOMMAND [ARGS]...  (one of {names})")
    module, _, attr = COMMANDS[argv[0]][0].partition(":")
    command = getattr(importlib.import_module(module), attr)
    command.main(args=argv[1:], prog_name=f"pha {argv[0]}")


if __name__ == "__main__":
    main(sys.argv[1:])
