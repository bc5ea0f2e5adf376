"""The ``constrained`` section of ``bench_generate.py``: grammar-constrained vs unconstrained autoregressive decoding.

Per sequence key whose serializer has a grammar and per batch size, the same sampler settings decode the key with and
without its grammar (:mod:`fourm_core.inference.constrain`), both forced to the same length (``stop_ids=()``: after a
grammar's ``[EOS]`` the row keeps being masked in the same state, so every step pays the masking cost), so the
tokens/s ratio is the cost of computing each row's allowed set and masking the logits. Beside it, that cost
alone (``mask_ms_per_step``: the grammar states of the batch masking random logits of the model's width and
advancing, no network), which a busy shared machine disturbs far less than whole generations. Kept apart from
``bench_generate.py`` so that file stays one screenful of sections.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks._common import markdown_table, paired_ratio, spread

Case = Callable[[int], Any]


def constrained_cases(
    pipe: Any,
    inputs: dict,
    keys: Sequence[str],
    batches: Sequence[int],
    tokens: int,
    step_of: Callable[[str, int], Any],
) -> tuple[dict[str, Case], dict[str, tuple[str, int, int]]]:
    """Timed cases ``constrained/<key>/<on|off>/b<batch>`` and their ``(key, tokens, batch)``; keys without a
    grammar are left out."""
    from fourm_core.inference.constrain import sequence_grammars

    grammars = sequence_grammars(pipe, keys)
    on, off = pipe.sampler(stop_ids=(), grammars=grammars), pipe.sampler(stop_ids=())
    cases: dict[str, Case] = {}
    meta: dict[str, tuple[str, int, int]] = {}
    for key in grammars:
        n = min(tokens, pipe.keys[key].max_tokens)
        step = step_of(key, n)
        for b in batches:
            for label, sampler in (("on", on), ("off", off)):
                name = f"constrained/{key}/{label}/b{b}"
                cases[name] = lambda seed, s=sampler, st=step, bb=b: s.generate(inputs, [st], seed=seed, batch_size=bb)
                meta[name] = (key, n, b)
    return cases, meta


def masking_seconds(pipe: Any, key: str, batch: int, tokens: int, repeats: int) -> list[float]:
    """Seconds per decoding step spent on the grammar alone (mask ``batch`` rows of random logits, advance by their
    argmax), one value per repeat."""
    import torch

    from fourm_core.inference.constrain import GrammarStates, sequence_grammars

    grammar = sequence_grammars(pipe, [key])[key]
    width = int(pipe.keys[key].vocab_size or grammar.size)
    logits = torch.randn(batch, width, generator=torch.Generator().manual_seed(0))
    out = []
    for _ in range(repeats):
        states, done = GrammarStates(grammar, batch), torch.zeros(batch, dtype=torch.bool)
        started = time.perf_counter()
        for t in range(tokens):
            new = states.mask_logits(logits, done, tokens - t).argmax(dim=-1)
            states.advance(new, done)
            done |= new == grammar.eos_id
        out.append((time.perf_counter() - started) / tokens)
    return out


def constrained_rows(
    times: dict[str, list[float]], meta: dict[str, tuple[str, int, int]], pipe: Any = None, repeats: int = 5
) -> list[dict[str, Any]]:
    """One row per key and batch: latency and tokens/s with and without the grammar, their paired ratio and (with
    ``pipe``) the masking cost alone per step."""
    rows = []
    for name, (key, n, b) in meta.items():
        if not name.endswith(f"/on/b{b}"):
            continue
        on, off = times[name], times[name.replace("/on/", "/off/")]
        row: dict[str, Any] = {"key": key, "batch": b, "tokens": n}
        for label, values in (("constrained", on), ("unconstrained", off)):
            s = spread(values)
            row[label] = {"latency_s": s, "tokens_per_s": round(b * n / s["median"], 1)}
        row["slowdown"] = paired_ratio(on, off)
        if pipe is not None:
            row["mask_ms_per_step"] = spread([s * 1e3 for s in masking_seconds(pipe, key, b, n, repeats)])
        rows.append(row)
    return rows


def constrained_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The section as a markdown table."""

    def ms(s: dict[str, float]) -> str:
        return f"{s['median'] * 1e3:.1f} ({s['min'] * 1e3:.1f}..{s['max'] * 1e3:.1f})"

    return markdown_table(
        ["key", "batch", "tokens", "constrained ms", "tok/s", "unconstrained ms", "tok/s", "ratio", "mask ms/step"],
        [
            [
                r["key"],
                r["batch"],
                r["tokens"],
                ms(r["constrained"]["latency_s"]),
                f"{r['constrained']['tokens_per_s']:.0f}",
                ms(r["unconstrained"]["latency_s"]),
                f"{r['unconstrained']['tokens_per_s']:.0f}",
                f"{r['slowdown']['median']:.2f} ({r['slowdown']['min']:.2f}..{r['slowdown']['max']:.2f})",
                f"{r['mask_ms_per_step']['median']:.2f} ({r['mask_ms_per_step']['min']:.2f}..)"
                if "mask_ms_per_step" in r
                else "-",
            ]
            for r in rows
        ],
    )
