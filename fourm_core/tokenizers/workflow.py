"""What ``fourm tokenizer train / eval`` do: find the modalities a tokenizer serves, train it on a store, measure its
bound, save it with its report, draw originals next to reconstructions."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fourm_core.devices import Placement
from fourm_core.registry import Registry
from fourm_core.storage.store import AlignedStore
from fourm_core.tokenizers.config import TrainConfig, config_from_spec, tokenizer_name
from fourm_core.tokenizers.families import get_family
from fourm_core.tokenizers.tokenizer import Tokenizer
from fourm_core.tokenizers.training import Split, collect, evaluate, fit
from fourm_core.viz.pictures import comparison_png

__all__ = ["TokenizerPlan", "bound_markdown", "eval_tokenizer", "plan_tokenizers", "train_tokenizer"]

REPORT = "report.json"


@dataclass
class TokenizerPlan:
    """One tokenizer to train: its name, the modalities it serves, or why it is skipped."""

    name: str
    modalities: tuple[str, ...]
    family: str
    skip_reason: str | None = None


def _learned(registry: Registry) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for m in registry.modalities():
        tok = m.spec.tokenizer
        if tok is None or not get_family(tok.family).learned or tok.transform is None:
            continue
        groups.setdefault(tokenizer_name(m.spec), []).append(m.name)
    return groups


def plan_tokenizers(
    registry: Registry, names: list[str] | None, store: AlignedStore | None = None
) -> list[TokenizerPlan]:
    """Tokenizers for the given modality or tokenizer names (all learned ones when ``names`` is empty); with a store,
    ones whose data is missing are skipped with the reason."""
    groups = _learned(registry)
    by_modality = {m: name for name, members in groups.items() for m in members}
    wanted: list[str] = []
    for n in names or sorted(groups):
        target = n if n in groups else by_modality.get(n)
        if target is None:
            known = ", ".join(sorted(set(groups) | set(by_modality)))
            raise ValueError(f"no learned tokenizer for {n!r}; known: {known}")
        if target not in wanted:
            wanted.append(target)
    plans = []
    for name in wanted:
        members = tuple(groups[name])
        spec = registry.get(members[0]).spec
        plan = TokenizerPlan(name, members, spec.tokenizer.family)
        if store is not None:
            config = config_from_spec(spec, store.preset, members)
            missing = []
            for m in members:
                source = f"{config.source[0] if config.source else m}/raw"
                if source not in store.parts():
                    missing.append(source)
            if missing:
                plan.skip_reason = f"the store has no {', '.join(missing)} (label it first)"
        plans.append(plan)
    return plans


def _prepare(registry: Registry, store: AlignedStore, plan: TokenizerPlan, cfg: TrainConfig) -> tuple[Tokenizer, Split]:
    spec = registry.get(plan.modalities[0]).spec
    tok = Tokenizer(config_from_spec(spec, store.preset, plan.modalities))
    return tok, collect(store, tok.config, registry, cfg.eval_fraction)


def train_tokenizer(
    registry: Registry,
    store: AlignedStore,
    plan: TokenizerPlan,
    out_dir: str | Path,
    cfg: TrainConfig,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    device: str = "cpu",
    dtype: str = "fp32",
) -> dict[str, Any]:
    """Train, evaluate and save one tokenizer under ``out_dir/<name>``; returns its report.

    ``device`` (``auto`` / ``cpu`` / ``cuda``) and ``dtype`` (``fp32`` / ``bf16``) say where and in which precision
    it trains (checked before the store is read: ``cuda`` without a GPU is one line); the report's and the saved
    config's training record say which were used. The bound is measured on the same device in fp32, the precision
    of the saved weights; the tokenizer is saved from, and left on, the CPU."""
    place = Placement.resolve(device, dtype)
    tok, split = _prepare(registry, store, plan, cfg)
    record = fit(tok, split.train, cfg, on_step, place)
    record["store"] = store.url
    report = {"name": plan.name, "modalities": list(plan.modalities), "family": plan.family, "training": record}
    with Placement(place.device, "fp32", place.requested).autocast():
        report["evaluation"] = evaluate(tok, split)
        pictured = {"plain": tok.decode_raw(tok.encode_raw(split.held_out[:8]))}
    Placement().move(tok)
    tok.info = {**record, "bound": report["evaluation"]["bound"]}
    directory = tok.save_pretrained(Path(out_dir) / plan.name)
    (directory / REPORT).write_text(json.dumps(report, indent=2, default=float) + "\n")
    comparison_png(tok.config.transform, split.held_out[:8], pictured, directory / "reconstructions.png")
    return report


def eval_tokenizer(
    registry: Registry, store: AlignedStore, name: str, tokenizers: str | Path, png: str | Path | None = None
) -> dict[str, Any]:
    """Re-measure a trained tokenizer on ``store``'s held-out samples and draw originals over reconstructions."""
    (plan,) = plan_tokenizers(registry, [name], store)
    if plan.skip_reason:
        raise ValueError(f"tokenizer {plan.name!r}: {plan.skip_reason}")
    tok = Tokenizer.from_pretrained(Path(tokenizers) / plan.name)
    split = collect(store, tok.config, registry, TrainConfig().eval_fraction)
    result = evaluate(tok, split)
    if png is not None:
        originals = split.held_out[:8]
        ids = tok.encode_raw(originals)
        rows = {"plain": tok.decode_raw(ids)}
        if tok.diffusion is not None:
            rows["diffusion"] = tok.decode_raw(ids, sampler="diffusion")
        result["png"] = str(comparison_png(tok.config.transform, originals, rows, png) or "")
    return result


def bound_markdown(reports: list[dict[str, Any]]) -> str:
    """The bound table of training reports as markdown: bound next to the mean baseline, the diffusion decoder
    where there is one, and codebook usage."""

    def fmt(metrics: dict[str, float]) -> str:
        return ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())

    lines = [
        "| tokenizer | family | steps | train s | bound | baseline (mean) | diffusion decoder | perplexity "
        "| codes used |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        ev, tr = r["evaluation"], r["training"]
        lines.append(
            f"| {r['name']} | {r['family']} | {tr['steps']} | {tr['seconds']} | {fmt(ev['bound'])} | "
            f"{fmt(ev['baseline'])} | {fmt(ev['diffusion']) if 'diffusion' in ev else '-'} | "
            f"{ev['usage']['perplexity']:.1f} | {ev['usage']['codes_used']:.0%} |"
        )
    return "\n".join(lines) + "\n"
