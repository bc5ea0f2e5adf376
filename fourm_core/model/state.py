"""What is wrong between a module's state dict and a file's tensors, in words a one-line error can carry.

Both strict loaders of published weights (the 4M models in :mod:`fourm_core.model.official`, the tokenizers in
:mod:`fourm_core.tokenizers.official.loader`) say the same thing the same way: ``torch``'s ``load_state_dict``
raises a multi-line report without shapes of unexpected keys, and only after allocating.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["state_mismatch"]

#: names listed per kind of problem before "... (N more)"
SHOWN = 8


def state_mismatch(expected: Mapping[str, Any], given: Mapping[str, Any], shown: int = SHOWN) -> list[str]:
    """``["2 missing: a, b", "1 unexpected: c", "1 wrong shape: d (3,) (expected (4,))"]``; empty when ``given``
    has exactly ``expected``'s names and shapes (values of either side need only a ``.shape``)."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [
        f"{k} {tuple(given[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in given and tuple(given[k].shape) != tuple(v.shape)
    ]
    problems = []
    for what, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if names:
            more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
            problems.append(f"{len(names)} {what}: {', '.join(names[:shown])}{more}")
    return problems
