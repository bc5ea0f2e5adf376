"""What each torchrun process runs for ``fourm train --nproc N``: the same training, its rank from the environment."""

from __future__ import annotations

import argparse
import os
import sys

from rich.console import Console
from rich.markup import escape

from fourm_core.errors import UserError, one_line


def main(argv: list[str] | None = None) -> int:
    from fourm_core.apps.cli.train import run_training

    parser = argparse.ArgumentParser(prog="fourm_core.training.launch")
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--restart", action="store_true")
    args = parser.parse_args(argv)
    console = Console()
    try:
        return run_training(args.config, args.set, args.restart, console)
    except UserError as exc:  # a device, config or store mistake: one line per rank, not a traceback each
        console.print(f"rank {os.environ.get('RANK', '?')}: {escape(one_line(str(exc)))}", style="red")
        return 2


if __name__ == "__main__":
    sys.exit(main())
