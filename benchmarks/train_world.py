"""Train a tiny 4M on a pre-tokenised synthetic-world store and report what it learned.

    python benchmarks/train_world.py --store demo/world.zarr --vocab demo/vocab/text_tokenizer.json \
        --tokenizers demo/tokenizers --out runs/world --minutes 5

Writes into ``--out``: the run (``log.jsonl``, checkpoints, ``final/``), ``curves.svg`` (validation loss per model
key), ``validation.md`` (the same as a table) and ``pixels2all.png``: for held-out scenes, the input picture, then
for every image-token target the true tokens and the model's one-pass prediction, both decoded by that target's
tokenizer. The step count comes from ``--minutes`` after timing a few steps, or ``--steps``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml

from fourm_core.model.network import FourMNetwork
from fourm_core.registry import Registry
from fourm_core.training.config import RunConfig
from fourm_core.training.data import TrainingData
from fourm_core.training.engine import FINAL, LOG_NAME, steps_for_seconds, train
from fourm_core.training.report import curves_svg, probe_figure, read_log, validation_table
from fourm_core.vocab import TextVocabulary

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs/train/tiny-cpu.yaml"))
    parser.add_argument("--store", required=True)
    parser.add_argument("--vocab", required=True)
    parser.add_argument("--tokenizers", required=True, help="trained tokenizers (for the probe pictures)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--steps", type=int, help="overrides --minutes")
    parser.add_argument("--val-samples", type=int, default=64)
    parser.add_argument("--probe-scenes", type=int, default=6)
    parser.add_argument("--probe", nargs="*", default=["depth"], help="modalities with a figure of their own")
    args = parser.parse_args()

    data = yaml.safe_load(Path(args.config).read_text())
    # the tokenizers are recorded with the model (final/fourm.json), so FourM.from_pretrained(out) finds them
    data.update(out_dir=args.out, vocabulary=args.vocab, tokenizers=args.tokenizers)
    data["datasets"] = [{"name": "world", "store": args.store, "val_samples": args.val_samples}]
    registry = Registry()
    steps = args.steps
    if steps is None:  # time a few steps, then size the run to the budget
        sizing = RunConfig.model_validate({**data, "schedule": {"steps": 1}})
        steps = max(10, steps_for_seconds(sizing, args.minutes * 60, registry, probe_steps=6))
    data["schedule"] = {"steps": steps, "warmup_steps": max(1, steps // 12)}
    data["eval_every"] = max(1, steps // 10)
    data["checkpoint_every"] = max(1, steps // 5)
    config = RunConfig.model_validate(data)
    t = time.perf_counter()
    result = train(config, registry)
    seconds = time.perf_counter() - t
    out = Path(args.out)
    records = read_log(out / LOG_NAME)
    curves_svg(records, out / "curves.svg")
    (out / "validation.md").write_text(validation_table(records, every=2) + "\n")
    model = FourMNetwork.from_pretrained(out / FINAL)
    data = TrainingData(config, registry, TextVocabulary.load(config.vocabulary))
    accuracy = probe_figure(model, data, registry, args.tokenizers, out / "pixels2all.png", n=args.probe_scenes)
    for name in args.probe:  # one figure per named modality, over more scenes
        key = registry.get(name).model_key(config.model.preset)
        probe_figure(model, data, registry, args.tokenizers, out / f"pixels2{name}.png", n=10, targets=[key])
    train_lines = [r for r in records if r["kind"] == "train"]
    summary = {
        "steps": result.steps,
        "seconds": round(seconds, 1),
        "useful_tokens_per_s": float(np.median([r["useful_tokens_per_s"] for r in train_lines[1:] or train_lines])),
        "mfu": float(np.median([r["mfu"] for r in train_lines[1:] or train_lines])),
        "fill": float(np.median([r["fill"] for r in train_lines])),
        "val_first": result.validation[0]["loss"],
        "val_last": result.validation[-1]["loss"],
        "probe_token_accuracy": accuracy,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(validation_table(records, every=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
