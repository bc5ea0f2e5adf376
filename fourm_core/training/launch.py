"""What each torchrun process runs for ``fourm train --nproc N``: the same training, its rank from the environment."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console


def main(argv: list[str] | None = None) -> int:
    from fourm_core.apps.cli.train import run_training

    parser = argparse.ArgumentParser(prog="fourm_core.training.launch")
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--restart", action="store_true")
    args = parser.parse_args(argv)
    return run_training(args.config, args.set, args.restart, Console())


if __name__ == "__main__":
    sys.exit(main())
