"""``python -m fourm_core.training.torchrun ARGS``: torchrun (``torch.distributed.run``, same arguments), whose
failure ends in one line instead of its launcher's traceback.

A training process that stops on a user mistake prints its own line (``rank R on HOST in CWD: ...``, by
:mod:`fourm_core.training.launch`) and exits with code 2; torchrun then raises ``ChildFailedError`` and prints a
traceback of its own code and a table, which says nothing the user can act on and buries the line that does.
Here the same launcher runs (``torch.distributed.run.parse_args`` and ``run``: nothing re-implemented), and its
failure becomes one line naming the failed ranks and their exit codes; the exit code is 2 when every failed
process reported a user mistake, else 1.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(argv))
    except ChildFailedError as exc:
        failures = sorted(exc.failures.items())
        codes = {failure.exitcode for _, failure in failures}
        ranks = ", ".join(f"rank {rank} (exit code {failure.exitcode})" for rank, failure in failures)
        print(f"error: {ranks} failed on this node; each process's own message is above", file=sys.stderr)
        return 2 if codes == {2} else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
