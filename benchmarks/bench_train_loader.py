"""Training step time with the micro-batches built in loader workers (``engine.loader_workers`` 0, 1, 2) against
the same steps on batches built beforehand and held in memory (no loading at all: the lower bound).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_train_loader.py [--scenes 256] [--steps 12] [--repeats 3]
        [--store STORE --vocab VOCAB]   # an existing pre-tokenised store instead of a fresh small one

Every case is a real ``fourm train`` run (DeepSpeed, ZeRO 0, fp32) of ``configs/train/tiny-cpu.yaml``'s model and
batch (dim 256, 4+4 blocks, micro-batch 16, 128 + 128 tokens) with one torch thread for the step; the step time is
the engine's own ``seconds_per_step`` of each logged step (batch fetch, forward, backward, optimiser), median over
the steps after the first ``--skip`` of each run, then median over ``--repeats`` runs interleaved across cases. The
fraction of loading hidden is ``(t_sync - t_workers) / (t_sync - t_prebuilt)``: 1 when the workers make loading
free, 0 when they save nothing. Without ``--store`` a store of ``--scenes`` synthetic scenes is made first: raw
pixels and sequences (serialised at load time, as training does) and two image modalities pre-tokenised with 2 crops
by small tokenizers (dim 32), so a batch does every kind of read training does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import machine_record, markdown_table, result_stem, spread, write_results  # noqa: E402

LABELLED = ["rgb", "depth", "normal", "caption", "det", "metadata_image", "color_palette"]
TOKENISED = ["depth", "normal"]


def make_store(root: Path, scenes: int) -> tuple[Path, Path]:
    """(store, vocabulary): ``scenes`` labelled 64 px synthetic scenes, :data:`TOKENISED` pre-tokenised."""
    from fourm_core.apps.demo.settings import DEMO_LABEL_OPTIONS
    from fourm_core.labeling.runner import label_store
    from fourm_core.registry import Registry
    from fourm_core.sources.adapters import SyntheticSource
    from fourm_core.storage.source_writer import create_source_store, write_source
    from fourm_core.storage.store import AlignedStore
    from fourm_core.tokenizers import Tokenizer, TrainConfig, config_from_spec
    from fourm_core.tokenizers.pretokenize import tokenize_store
    from fourm_core.tokenizers.training import collect, fit
    from fourm_core.vocab import build_text_vocabulary

    registry = Registry()
    path = root / "world.zarr"
    source = SyntheticSource(scenes, 64, 5)
    write_source(create_source_store(path, source, 64, "tiny", 16), source)
    options = {**DEMO_LABEL_OPTIONS, "allow_random_teachers": True, "teacher_downloads": False}
    label_store(path, registry=registry, only=LABELLED, options=options)
    store = AlignedStore.open(path, mode="r")
    for name in TOKENISED:  # tokenizers only need to exist: what is timed is reading their tokens
        config = config_from_spec(registry.get(name).spec, "tiny").model_copy(
            update={"dim": 32, "enc_depth": 1, "dec_depth": 1, "heads": 2, "diffusion": None}
        )
        tok = Tokenizer(config)
        split = collect(store, tok.config, registry, 0.2)
        fit(tok, split.train + split.held_out, TrainConfig(steps=1, max_seconds=None, batch_size=8))
        tok.save_pretrained(root / "toks" / tok.name)
    tokenize_store(path, root / "toks", registry, only=TOKENISED, crops=2, seed=0)
    texts = [row["text"] for b in range(store.n_blocks) for row in store.read_block("caption/raw", b) if row]
    words = sorted({w for m in registry.modalities() for w in m.spec.vocab_words})
    vocab = build_text_vocabulary(texts, words).save(root / "text_tokenizer.json")
    return path, vocab


def run_case(base: dict[str, Any], out: Path, workers: int | None, prefetch: int) -> tuple[list[float], list[float]]:
    """(seconds per step, seconds each micro-batch fetch kept the step waiting) of one run; ``workers=None``: the
    batches built before the first step and held in memory."""
    from fourm_core.training import prefetch as prefetch_module
    from fourm_core.training.config import RunConfig
    from fourm_core.training.engine import LOG_NAME, train

    data = json.loads(json.dumps(base))
    data["out_dir"] = str(out)
    data["engine"].update(loader_workers=workers or 0, prefetch=prefetch)
    config = RunConfig.model_validate(data)
    original = prefetch_module.StepBatches
    waits: list[float] = []
    # the engine looks StepBatches up in its module when a run starts
    prefetch_module.StepBatches = _timed(_prebuilt(original) if workers is None else original, waits)  # type: ignore[misc]
    try:
        train(config, resume=False)
    finally:
        prefetch_module.StepBatches = original  # type: ignore[misc]
    records = [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines()]
    return [r["seconds_per_step"] for r in records if r["kind"] == "train"], waits


def load_seconds(base: dict[str, Any], count: int) -> list[float]:
    """Seconds to build one micro-batch in this process (what loading costs a step when nothing hides it)."""
    from fourm_core.registry import Registry
    from fourm_core.training.config import RunConfig
    from fourm_core.training.data import TrainingData
    from fourm_core.vocab import TextVocabulary

    config = RunConfig.model_validate({**base, "out_dir": "unused"})
    data = TrainingData(config, Registry(), TextVocabulary.load(config.vocabulary))
    micro, times = config.engine.micro_batch_size, []
    for i in range(count):
        start = time.perf_counter()
        data.batch(i * micro, micro)
        times.append(time.perf_counter() - start)
    return times


def _prebuilt(base: type) -> type:
    class Prebuilt(base):  # type: ignore[valid-type,misc]
        """Every micro-batch of the run built (and moved) when the engine makes this, before its first step."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.items = [self.positions.load(i).to(self.device, self.dtype) for i in range(len(self.positions))]

        def __next__(self) -> Any:
            if self._next >= len(self.items):
                raise StopIteration
            self._next += 1
            return self.items[self._next - 1]

    return Prebuilt


def _timed(base: type, waits: list[float]) -> type:
    class Timed(base):  # type: ignore[valid-type,misc]
        """Records how long each ``next`` (the step's batch fetch) takes."""

        def __next__(self) -> Any:
            start = time.perf_counter()
            item = super().__next__()
            waits.append(time.perf_counter() - start)
            return item

    return Timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(HERE.parent / "configs/train/tiny-cpu.yaml"))
    parser.add_argument("--store", help="a pre-tokenised store (default: make a small one)")
    parser.add_argument("--vocab", help="its text vocabulary (with --store)")
    parser.add_argument("--scenes", type=int, default=256)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--skip", type=int, default=2, help="first steps of a run left out (warm-up)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--prefetch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the step")
    parser.add_argument("--note", default="")
    parser.add_argument("--out", default=None, help="result stem (default benchmarks/results/<date>-<machine>-...)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        store, vocab = (Path(args.store), Path(args.vocab)) if args.store else make_store(root, args.scenes)
        made = time.perf_counter() - start
        base = yaml.safe_load(Path(args.config).read_text())
        base.update(vocabulary=str(vocab), eval_every=None, checkpoint_every=None, log_every=1, tokenizers=None)
        base["datasets"] = [{"name": "world", "store": str(store)}]
        base["schedule"] = {"steps": args.steps, "warmup_steps": 1}
        base["engine"] = {**base.get("engine", {}), "threads": args.threads, "peak_gflops": 100.0}
        load = load_seconds(base, args.steps)
        cases: dict[str, int | None] = {"prebuilt": None, **{f"workers {w}": int(w) for w in args.workers.split(",")}}
        step: dict[str, list[float]] = {name: [] for name in cases}
        wait: dict[str, list[float]] = {name: [] for name in cases}
        for r in range(args.repeats):  # interleaved: drift of a shared machine hits every case alike
            for name, workers in cases.items():
                steps, waits = run_case(base, root / f"run-{r}-{name.replace(' ', '')}", workers, args.prefetch)
                step[name].append(statistics.median(steps[args.skip :]))
                wait[name].append(statistics.median(waits[args.skip :]))
                print(f"repeat {r} {name}: {step[name][-1]:.3f} s/step, {wait[name][-1]:.4f} s batch wait", flush=True)

    def hidden(times: dict[str, list[float]], name: str) -> dict[str, float] | None:
        """``(t_sync - t_case) / (t_sync - t_prebuilt)`` per repeat (the three measured in the same round)."""
        pairs = zip(times["workers 0"], times[name], times["prebuilt"], strict=True)
        shares = [(sync - case) / (sync - pre) for sync, case, pre in pairs if sync > pre]
        return spread(shares, 3) if shares else None

    compared = [n for n in cases if n not in ("prebuilt", "workers 0")] if "workers 0" in cases else []
    by_step = {n: hidden(step, n) for n in compared}
    by_wait = {n: hidden(wait, n) for n in compared}
    rows = []
    for name in cases:
        a, b = spread(step[name], 4), spread(wait[name], 4)
        shares = [d.get(name) for d in (by_step, by_wait)]
        rows.append(
            [
                name,
                f"{a['median']:.3f} ({a['min']:.3f}..{a['max']:.3f})",
                f"{b['median']:.4f} ({b['min']:.4f}..{b['max']:.4f})",
                *("" if x is None else f"{x['median']:.0%} ({x['min']:.0%}..{x['max']:.0%})" for x in shares),
            ]
        )
    record = {
        "benchmark": "bench_train_loader",
        "machine": machine_record(args.threads),
        "store": "given" if args.store else f"{args.scenes} synthetic scenes, {TOKENISED} tokenised (2 crops)",
        "store_seconds": round(made, 1),
        "config": Path(args.config).name,
        "steps": args.steps,
        "skip": args.skip,
        "repeats": args.repeats,
        "prefetch": args.prefetch,
        "seconds_per_step": {n: spread(v, 4) for n, v in step.items()},
        "batch_wait_s": {n: spread(v, 4) for n, v in wait.items()},
        "per_run": {"seconds_per_step": step, "batch_wait_s": wait},
        "hidden_fraction_step_time": by_step,
        "hidden_fraction_batch_wait": by_wait,
        "micro_batch_build_s": spread(load, 4),
        "note": args.note,
    }
    headers = [
        "case",
        "s/step median (min..max over runs)",
        "batch wait s median (min..max)",
        "loading hidden, step times",
        "loading hidden, batch wait",
    ]
    markdown = (
        f"# bench_train_loader: {record['config']} model and batch, {args.threads} step thread(s), {args.steps} "
        f"steps x {args.repeats} runs per case\n\n{markdown_table(headers, rows)}\n\nOne micro-batch built alone: "
        f"{record['micro_batch_build_s']['median']:.3f} s (median of {len(load)}). Loading hidden = "
        "(t_sync - t_workers) / (t_sync - t_prebuilt), per interleaved round, median (min..max) over rounds; "
        "t is the step time, or the time the step waited for its batch.\n"
    )
    stem = Path(args.out) if args.out else result_stem("train-loader")
    for path in write_results(stem, record, markdown + (f"\n{args.note}\n" if args.note else "")):
        print(path)
    print(markdown)


if __name__ == "__main__":
    main()
