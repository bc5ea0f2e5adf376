"""What a training run shows: validation curves per model key, and one-pass predictions as pictures.

:func:`predict_tokens` is a probe, not the generation sampler: every token of one target key is predicted in a
single decoder pass (argmax) from fully visible inputs. It answers "has the model learned X -> Y yet" during and
right after training; MaskGIT / ROAR / autoregressive sampling is the generation module's job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fourm_core.data.collate import Collator
from fourm_core.data.masking import MaskedKey

__all__ = ["curves_svg", "predict_tokens", "probe_figure", "read_log", "validation_table"]

_COLOURS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The JSON-lines records of a run's ``log.jsonl``."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def validation_table(records: Sequence[Mapping[str, Any]], every: int = 1) -> str:
    """Markdown: one row per model key, one column per validation step (every ``every``-th), plus the ratio of
    the last to the first loss."""
    val = [r for r in records if r["kind"] == "val"]
    if not val:
        return "(no validation records)"
    shown = val[::every] if val[-1] in val[::every] else [*val[::every], val[-1]]
    keys = sorted(val[0]["losses"])
    lines = [
        "| key | " + " | ".join(f"step {r['step']}" for r in shown) + " | last / first |",
        "|---|" + "---|" * (len(shown) + 1),
    ]
    for k in [*keys, "mean"]:
        values = [r["losses"].get(k) if k != "mean" else r["loss"] for r in shown]
        first, last = values[0], values[-1]
        ratio = f"{last / first:.2f}" if first and last is not None else "-"
        cells = " | ".join("-" if v is None else f"{v:.3f}" for v in values)
        lines.append(f"| {k} | {cells} | {ratio} |")
    return "\n".join(lines)


def curves_svg(records: Sequence[Mapping[str, Any]], path: str | Path, width: int = 720, height: int = 420) -> Path:
    """Validation loss per key against step as a small SVG line chart.

    Written by hand (about 40 lines) rather than adding matplotlib, which nothing else here needs; an SVG also
    embeds directly in the demo's HTML report."""
    val = [r for r in records if r["kind"] == "val"]
    if len(val) < 2:
        raise ValueError("need at least two validation records for a curve")
    keys = sorted(val[0]["losses"])
    steps = [r["step"] for r in val]
    values = [v for r in val for v in r["losses"].values()]
    lo, hi = 0.0, max(values) * 1.05
    left, right, top, bottom = 50, 190, 20, 40
    w, h = width - left - right, height - top - bottom

    def xy(step: float, loss: float) -> tuple[float, float]:
        return left + w * step / max(steps[-1], 1), top + h * (1 - (loss - lo) / (hi - lo))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        f'font-size="11"><rect width="100%" height="100%" fill="white"/>',
        f'<line x1="{left}" y1="{top + h}" x2="{left + w}" y2="{top + h}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" stroke="black"/>',
        f'<text x="{left + w / 2}" y="{height - 8}" text-anchor="middle">step</text>',
        f'<text x="12" y="{top + h / 2}" transform="rotate(-90 12 {top + h / 2})" text-anchor="middle">'
        "validation loss</text>",
    ]
    for i in range(6):
        loss = lo + (hi - lo) * i / 5
        _, y = xy(0, loss)
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{loss:.1f}</text>')
        step = steps[-1] * i / 5
        x, _ = xy(step, lo)
        parts.append(f'<text x="{x:.1f}" y="{top + h + 14}" text-anchor="middle">{step:.0f}</text>')
    for i, k in enumerate(keys):
        colour = _COLOURS[i % len(_COLOURS)]
        dash = "" if i < len(_COLOURS) else ' stroke-dasharray="4 3"'
        points = " ".join(
            f"{x:.1f},{y:.1f}" for x, y in (xy(r["step"], r["losses"][k]) for r in val if k in r["losses"])
        )
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5"{dash} points="{points}"/>')
        ly = top + 12 * i + 6
        parts.append(f'<line x1="{left + w + 10}" y1="{ly}" x2="{left + w + 28}" y2="{ly}" stroke="{colour}"{dash}/>')
        parts.append(f'<text x="{left + w + 32}" y="{ly + 4}">{k}</text>')
    parts.append("</svg>")
    path = Path(path)
    path.write_text("\n".join(parts))
    return path


def predict_tokens(
    model: Any, collator: Collator, contents: Sequence[Mapping[str, Any]], inputs: Sequence[str], target: str
) -> torch.Tensor:
    """Argmax tokens of every position of ``target`` (an image-like or global token key) from fully visible
    ``inputs``, one decoder pass: (B, N) ids."""
    n = collator.keys[target].max_tokens
    masks = []
    for content in contents:
        sample: dict[str, MaskedKey] = {}
        for key in inputs:
            m = collator.masking_sample({key: content[key]})[key]
            length = int(m) if isinstance(m, int) else len(m)
            sample[key] = MaskedKey(
                torch.zeros(length, dtype=torch.bool), torch.ones(length, dtype=torch.bool), length, 0
            )
        sample[target] = MaskedKey(torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool), 0, n)
        masks.append(sample)
    filled = [{**{k: c[k] for k in inputs}, target: torch.zeros(n, dtype=torch.long)} for c in contents]
    batch = collator(filled, masks)
    model.eval()
    with torch.no_grad():
        logits = model(batch.mod_dict, batch.num_encoder_tokens, batch.num_decoder_tokens, return_logits=True)
    return logits[target][:, :n].argmax(-1)


def probe_figure(
    model: Any,
    data: Any,
    registry: Any,
    tokenizers: str | Path,
    path: str | Path,
    n: int = 6,
    inputs: Sequence[str] | None = None,
    size: int = 80,
    targets: Sequence[str] | None = None,
) -> dict[str, float]:
    """Pixels -> every image-token target, on ``n`` held-out scenes of the first store: a PNG with the input row,
    then per target key the ground truth and the one-pass prediction, both decoded by that key's tokenizer (so the
    truth row is the tokenizer's bound). Returns the token accuracy per key. Keys come from the key table (their
    kind), never from names; ``targets`` restricts them; targets without a trained tokenizer in ``tokenizers``
    are left out."""
    from PIL import Image, ImageDraw

    from fourm_core.viz.grid import tile_row
    from fourm_core.viz.pictures import picture

    table, preset = data.keys, data.preset
    members = registry.model_keys(preset)
    inputs = list(inputs or [k for k, info in table.items() if info.is_pixels])
    if not inputs:
        raise ValueError("no pixel key to condition on")
    source = data.sources[0]
    indices = source.val[:n] or list(range(n))
    store = _store_of(source)
    contents = [data.builder(source.read(i, 0 if source.n_crops > 1 else None)) for i in indices]
    contents = [c for c in contents if all(k in c for k in inputs)]
    first = members[inputs[0]][0]
    raw_name = next(a.name for a in first.spec.storage if a.form == "raw")
    rows: list[tuple[str, list[np.ndarray]]] = [
        (inputs[0], [picture("color", store.read(f"{first.name}/raw", i)[raw_name]) for i in indices[: len(contents)]])
    ]
    accuracy: dict[str, float] = {}
    for key, info in table.items():
        if not info.is_image_tokens or not info.target or key in inputs:
            continue
        if targets is not None and key not in targets:
            continue
        modality = members[key][0].name
        tokenizer = registry.tokenizer(modality, preset, tokenizers)
        if not getattr(tokenizer, "trained", False) or not all(key in c for c in contents):
            continue
        predicted = predict_tokens(model, data.collator, contents, inputs, key)
        truth = torch.stack([c[key] for c in contents])
        accuracy[key] = float((predicted == truth).float().mean())
        transform = tokenizer.config.transform
        rows.append((f"{key} true", [picture(transform, r) for r in tokenizer.decode_raw(truth)]))
        rows.append((f"{key} pred", [picture(transform, r) for r in tokenizer.decode_raw(predicted)]))
    label_w = 150
    tiles = [np.concatenate([np.full((size, label_w, 3), 255, np.uint8), tile_row(p, size)], axis=1) for _, p in rows]
    canvas = Image.fromarray(np.concatenate(tiles, axis=0))
    draw = ImageDraw.Draw(canvas)
    for r, (label, _) in enumerate(rows):
        draw.text((4, r * size + size // 2 - 6), label, fill=(0, 0, 0))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return accuracy


def _store_of(source: Any) -> Any:
    from fourm_core.storage.store import AlignedStore

    return AlignedStore.open(source.dataset.location, mode="r")
