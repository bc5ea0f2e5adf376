"""What each training process runs when a launcher starts it: ``fourm train --nproc/--nnodes`` (torchrun),
``torchrun ... -m fourm_core.training.launch --config C``, ``deepspeed --module fourm_core.training.launch --config
C`` or ``srun python -m fourm_core.training.launch --config C``: the same training, its rank from the environment
(each launcher's variables made torchrun's by :func:`~fourm_core.training.rendezvous.adopt_launcher_environment`).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from rich.console import Console
from rich.markup import escape

from fourm_core.errors import one_line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The launch module's arguments; ``--local_rank=N`` (DeepSpeed's launcher adds it, the old
    ``torch.distributed.launch`` too, with a dash or an underscore) is accepted beside the environment's."""
    parser = argparse.ArgumentParser(prog="fourm_core.training.launch")
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--restart", action="store_true")
    parser.add_argument(
        "--local_rank", "--local-rank", dest="local_rank", type=int, default=None, help=argparse.SUPPRESS
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from fourm_core.apps.cli.errors import user_error_message
    from fourm_core.apps.cli.train import run_training
    from fourm_core.training.rendezvous import adopt_launcher_environment

    args = parse_args(argv)
    console = Console()
    errors = Console(stderr=True, soft_wrap=True)  # one line per rank, however long, where launchers collect errors
    try:
        adopt_launcher_environment(args.local_rank)
        return run_training(args.config, args.set, args.restart, console)
    except Exception as exc:  # a device, config or store mistake: one line per rank, not a traceback each
        message = user_error_message(exc)
        if message is None:  # a bug: its traceback (torchrun's error file names the rank)
            raise
        # where: on several machines a mistake (a path missing on one node) is found by where it happened
        where = f"rank {os.environ.get('RANK', '?')} on {socket.gethostname()} in {os.getcwd()}"
        errors.print(f"{escape(where)}: {escape(one_line(message))}", style="red", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
