"""4M masking sampler on one thread: samples/s and how much of the token budgets the masks fill.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_masking.py [--baseline-ref HEAD] [--out PATH]

Key set: the 4M-21 model keys (``KeyTable.from_registry(Registry(), "paper")``) that the official mixture
``mix_mod21_all2allmix_rgb2all_capT5bias.yaml`` lists, when ``$FOURM_ML4M_DATA`` names a folder holding it; otherwise
every paper key under a generated all-to-all mixture (alpha 1 everywhere, rgb-like input-only keys as inputs). Budgets
256 / 256.

Samples are synthetic but sized like the real data: image / global token keys hold ``max_tokens`` tokens (pixels
too, as the collator passes them), embedding rows a caption's length, span sequences realistic lengths (captions
10-40 tokens, detections and instances tens to hundreds, poses often absent), metadata 8-20 chunks of 2-3 ids.
Sequences come as the pipeline gives them (id tensors; chunk lists).

Rows (median of ``--repeats`` passes over ``--samples`` samples, with min..max; the passes of the configs are
interleaved, so drift in the machine's speed hits every config alike):
- ``shared rng``: one generator for all samples (``masker(sample, rng)``);
- ``rng per sample``: ``default_rng(seed)`` per sample, what the training data path does (its cost included);
- ``ml-4m budgets``: ``redistribute=False`` (what caps cut off is lost);
- ``baseline <ref>`` (and ``, rng per sample``): ``fourm_core/masking.py`` as of a git revision, for before/after
  figures.

Fill: mean over samples of (assigned budget / n_in) and (tokens actually used / n_in), the same for targets. A
sequence may use less than its budget (span masking keeps a random fraction), so "used" <= "assigned".
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fourm_core.data.masking import (  # noqa: E402
    FourMMasker,
    KeyAlphas,
    MaskingMixture,
    MaskingStrategy,
    load_mixture,
)
from fourm_core.keys import KeyInfo, KeyTable  # noqa: E402
from fourm_core.registry import Registry  # noqa: E402
from fourm_core.spec import MaskingUnit  # noqa: E402
from fourm_core.testing.plugin import ml4m_data_dir  # noqa: E402

MIXTURE_FILE = "mix_mod21_all2allmix_rgb2all_capT5bias.yaml"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "2026-11-29-x86_64-2core-masking.json"
#: (low, high) token counts of span sequences in real 4M-21 data, and the chance a sample lacks the key;
#: keys not listed get 10-60% of their max_tokens, present 90% of the time.
SEQUENCE_LENGTHS = {
    "caption": ((10, 40), 0.0),
    "det": ((20, 160), 0.1),
    "human_poses": ((40, 200), 0.6),
    "sam_instance": ((60, 290), 0.05),
    "color_palette": ((23, 23), 0.0),
}
EOS = 3


def setup() -> tuple[dict[str, KeyInfo], MaskingMixture, str]:
    """4M-21 keys and the official mixture (or a generated all-to-all one over the same keys)."""
    layouts = dict(KeyTable.from_registry(Registry(), "paper"))
    folder = ml4m_data_dir()  # $FOURM_ML4M_DATA; without it, the generated mixture below
    path = folder / MIXTURE_FILE if folder is not None else None
    if path is not None and path.is_file():
        mixture = load_mixture(path)
        return {k: v for k, v in layouts.items() if k in mixture.keys()}, mixture, str(path)
    alphas = {
        k: KeyAlphas(input_alpha=1.0, target_alpha=0.0 if not v.target or v.is_embedding else 1.0)
        for k, v in layouts.items()
    }
    return layouts, MaskingMixture(strategies=[MaskingStrategy(alphas=alphas)]), "generated all-to-all (alpha 1)"


def make_samples(layouts: dict[str, KeyInfo], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` masker inputs sized like real samples (see the module docstring)."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n):
        sample: dict[str, Any] = {}
        caption_len = int(rng.integers(10, 41))
        for key, layout in layouts.items():
            if layout.is_embedding:
                sample[key] = min(caption_len, layout.max_tokens)
            elif layout.masking == MaskingUnit.TOKEN:
                sample[key] = layout.max_tokens
            elif layout.masking == MaskingUnit.CHUNK:
                chunks = [
                    rng.integers(300, 3000, size=int(rng.integers(2, 4))).tolist() for _ in range(rng.integers(8, 21))
                ]
                sample[key] = [*chunks, [EOS]]
            else:
                (lo, hi), absent = SEQUENCE_LENGTHS.get(
                    key, ((layout.max_tokens // 10, max(layout.max_tokens * 6 // 10, 1)), 0.1)
                )
                if rng.random() < absent:
                    continue
                length = min(int(rng.integers(lo, hi + 1)), layout.max_tokens)
                ids = [*rng.integers(300, 30000, size=max(length - 1, 0)).tolist(), EOS]
                sample[key] = torch.tensor(ids, dtype=torch.long)
        samples.append(sample)
    return samples


def rate(masker: Any, samples: list[dict[str, Any]], n: int, per_sample_rng: bool) -> float:
    """Samples/s of ``n`` maskings cycling over ``samples``."""
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for i in range(n):
        masker(samples[i % len(samples)], np.random.default_rng(i) if per_sample_rng else rng)
    return n / (time.perf_counter() - start)


def fill(masker: Any, samples: list[dict[str, Any]], n_in: int, n_tgt: int) -> dict[str, float]:
    """Mean assigned and used fractions of the input / target budgets."""
    rng = np.random.default_rng(1)
    rows = []
    for sample in samples:
        out = masker(sample, rng)
        used_in = used_tgt = 0
        for m in out.values():
            if m.input_ids is not None:
                used_in, used_tgt = used_in + len(m.input_ids), used_tgt + len(m.target_ids)
            else:
                used_in += int((~m.input_mask).sum())
                used_tgt += int((~m.target_mask).sum())
        assigned_in = sum(m.input_budget for m in out.values())
        assigned_tgt = sum(m.target_budget for m in out.values())
        rows.append((assigned_in / n_in, used_in / n_in, assigned_tgt / n_tgt, used_tgt / n_tgt))
    a = np.asarray(rows)
    return {
        "input_assigned": round(float(a[:, 0].mean()), 4),
        "input_used": round(float(a[:, 1].mean()), 4),
        "target_assigned": round(float(a[:, 2].mean()), 4),
        "target_used": round(float(a[:, 3].mean()), 4),
        "input_full": round(float((a[:, 0] >= 1.0).mean()), 4),
    }


#: where the masking code lived: one module before the layout move, a one-file package after it, then a package
#: split along its seams (its modules import each other relatively, so a copy imports as itself)
MASKING_PATHS = ("fourm_core/masking.py", "fourm_core/data/masking/")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def load_revision(ref: str) -> ModuleType:
    """The masking code as of git revision ``ref`` (whichever layout it had), imported as ``masking_baseline``."""
    folder = Path(tempfile.mkdtemp()) / "masking_baseline"
    folder.mkdir()
    files = [f for path in MASKING_PATHS for f in _git("ls-tree", "-r", "--name-only", ref, path).split()]
    files = [f for f in files if f.endswith(".py")]
    if not files:
        raise SystemExit(f"no masking code at {ref} (looked in {', '.join(MASKING_PATHS)})")
    if files[0].endswith("/masking.py"):  # a single module: the package's __init__
        files = files[:1]
    for f in files:
        name = "__init__.py" if f.endswith("/masking.py") else Path(f).name
        (folder / name).write_text(_git("show", f"{ref}:{f}"))
    spec = importlib.util.spec_from_file_location("masking_baseline", folder / "__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["masking_baseline"] = module
    spec.loader.exec_module(module)
    return module


def baseline_keys(old: ModuleType, keys: dict[str, KeyInfo]) -> dict[str, Any]:
    """What an old masker takes: its ``KeyLayout`` (before the key table) or the key table itself."""
    if not hasattr(old, "KeyLayout"):
        return keys
    return {
        k: old.KeyLayout(old.MaskingUnit(v.masking.value), v.max_tokens, not v.target, not v.input, v.is_embedding)
        for k, v in keys.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000, help="maskings per timed pass")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--pool", type=int, default=512, help="distinct generated samples")
    parser.add_argument("--fill-samples", type=int, default=2000)
    parser.add_argument("--baseline-ref", default=None, help="git revision of masking.py to time as the baseline")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args()
    torch.set_num_threads(1)

    layouts, mixture, source = setup()
    samples = make_samples(layouts, args.pool)
    fill_samples = make_samples(layouts, args.fill_samples, seed=1)
    n_in, n_tgt = mixture.input_tokens.high, mixture.target_tokens.high
    configs: dict[str, tuple[Any, bool]] = {
        "shared rng": (FourMMasker(layouts, mixture, seed=0), False),
        "rng per sample": (FourMMasker(layouts, mixture, seed=0), True),
        "ml-4m budgets (redistribute=False)": (FourMMasker(layouts, mixture, seed=0, redistribute=False), False),
    }
    if args.baseline_ref:
        old = load_revision(args.baseline_ref)
        old_layouts = baseline_keys(old, layouts)
        old_mixture = old.MaskingMixture.model_validate(mixture.model_dump())
        configs[f"baseline {args.baseline_ref}"] = (old.FourMMasker(old_layouts, old_mixture, seed=0), False)
        configs[f"baseline {args.baseline_ref}, rng per sample"] = (
            old.FourMMasker(old_layouts, old_mixture, seed=0),
            True,
        )

    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {}
    for masker, per_sample in configs.values():
        rate(masker, samples, min(200, args.samples), per_sample)  # warm up
    # passes interleaved over the configs: on a shared (virtual) machine the speed drifts over seconds, and
    # timing one config after the other would fold that drift into the before/after comparison
    all_rates: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.repeats):
        for name, (masker, per_sample) in configs.items():
            all_rates[name].append(rate(masker, samples, args.samples, per_sample))
    for name, (masker, per_sample) in configs.items():
        rates = all_rates[name]
        results[name] = {
            "median": round(statistics.median(rates), 1),
            "min": round(min(rates), 1),
            "max": round(max(rates), 1),
        }
        if not per_sample:
            results[name]["fill"] = fill(masker, fill_samples, n_in, n_tgt)

    record = {
        "benchmark": "masking",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "threads": 1,
        "load_average_1min_at_start": round(load_before, 2),
        "mixture": source,
        "keys": len(layouts),
        "budgets": [n_in, n_tgt],
        "samples_per_pass": args.samples,
        "repeats": args.repeats,
        "configs": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")

    print(f"masking, 1 thread, {len(layouts)} keys, {source}, budgets {n_in}/{n_tgt} (load {load_before:.1f})\n")
    print("| config | samples/s (median) | min..max | input fill assigned / used | target fill assigned / used |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        f = r.get("fill")
        fills = (
            ("-", "-")
            if f is None
            else (
                f"{f['input_assigned']:.3f} / {f['input_used']:.3f}",
                f"{f['target_assigned']:.3f} / {f['target_used']:.3f}",
            )
        )
        print(f"| {name} | {r['median']:.0f} | {r['min']:.0f}..{r['max']:.0f} | {fills[0]} | {fills[1]} |")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
