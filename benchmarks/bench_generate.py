"""Generation latency per target type, tokens/s, and autoregressive decoding with vs without the key/value cache.

    .venv/bin/python benchmarks/bench_generate.py --model /tmp/runl/final --tokenizers /tmp/toks_all \
        --vocab demo/vocab/text_tokenizer.json --store /tmp/w2k [--threads 2] [--repeats 5] [--batch-sizes 1,8]

Without ``--model`` a randomly initialised model of the demo's size (``apps.demo.run.DEMO_MODEL`` on the ``tiny``
preset, every registry key) is timed, so the benchmark runs on a fresh machine: with ``stop_ids=()`` every
sequence is decoded to its length limit, so latency does not depend on the weights. The input is one real picture:
sample ``--index`` of ``--store`` (``inference.queries.store_inputs``), else a synthetic scene's RGB normalised
as ``fourm_core.inference.requests.normalise_pixels`` does.

Sections (each a median over ``--repeats`` with min..max and quartiles; all cases of a run are interleaved, repeat
by repeat, so drift in the machine's speed hits them alike; ratios are taken per repeat and summarised):

1. ``targets``: from the pixels, the image-token key with MaskGIT 1 step, MaskGIT ``--steps`` steps, ROAR
   ``--steps`` steps; the global-token key with MaskGIT 1 step; the sequence key autoregressive with the cache,
   ``--seq-tokens`` tokens forced (``stop_ids=()``). Latency per generation (a whole batch) and generated tokens/s
   (batch x tokens / latency).
2. ``kv_cache``: the sequence key at ``--lengths`` tokens (capped at its ``max_tokens``), ``use_cache`` True and
   False, and the speed-up (uncached / cached latency).
3. ``cfg``: ``cfg_scale`` 3 vs 1 on the MaskGIT ``--steps`` case (3 runs a second, unconditional pass per step).
4. ``end_to_end`` (only with ``--model``, ``--tokenizers`` and ``--vocab``): ``run_generation`` from the picture to
   the image-token and sequence targets by modality name, with the default schedule (MaskGIT 8 steps, then the
   sequence until ``[EOS]``) and tokenizer decoding; beside it the sampler alone on the same inputs and schedule
   (same seed, so the same ids), whose difference is the request checks, input building and decoding.
5. ``constrained`` (needs a text vocabulary): every sequence key whose serializer has a grammar, ``--seq-tokens``
   tokens forced, decoded with and without its grammar (:mod:`benchmarks._constrained`); ``--only constrained``
   runs just this section (without ``--vocab`` or the demo's, on a vocabulary trained on the serializers' examples)
   and writes ``<date>-<machine>-constrained.{json,md}``.

Writes ``benchmarks/results/<date>-<machine>-generate.{json,md}`` (``--out-dir``) and prints the table.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import (  # noqa: E402
    machine_record,
    markdown_table,
    paired_ratio,
    result_stem,
    spread,
    time_interleaved,
    write_results,
)
from benchmarks._constrained import constrained_cases, constrained_markdown, constrained_rows  # noqa: E402
from fourm_core.data.masking import PAD_ID  # noqa: E402

NAME = "generate"
DEMO_VOCAB = ROOT / "demo" / "vocab" / "text_tokenizer.json"
PRESET = "tiny"


# ------------------------------------------------------------------------------------------------ setup


def build_pipeline(args: argparse.Namespace, registry: Any, vocabulary: Any) -> tuple[Any, str]:
    """(inference pipeline, description): the trained run in ``--model`` or an untrained demo-size model."""
    from fourm_core.inference.pipeline import Pipeline
    from fourm_core.keys import KeyTable
    from fourm_core.model.network import FourMNetwork, fourm_config

    if args.model:
        model = FourMNetwork.from_pretrained(args.model, registry=registry).eval()
        return Pipeline.create(model, registry, None, vocabulary, args.tokenizers), f"trained: {args.model}"
    from fourm_core.apps.demo.run import DEMO_MODEL

    size = vocabulary.size if vocabulary is not None else 30000
    info = KeyTable.from_registry(registry, PRESET, text_vocab_size=size)
    torch.manual_seed(0)
    model = FourMNetwork(fourm_config(info, "tiny", "swiglu_nobias", **DEMO_MODEL)).eval()
    note = f"untrained: tiny preset, DEMO_MODEL {DEMO_MODEL}, text vocab {size}"
    return Pipeline.create(model, registry, PRESET, vocabulary, args.tokenizers), note


def pick_key(info: Any, kind: str, wanted: str | None, prefer: str, target: bool = True) -> str:
    """``wanted`` (checked), else the first key of ``kind`` whose name contains ``prefer``, else the first."""
    keys = [k for k, v in info.items() if v.kind.value == kind and (v.target if target else v.input)]
    if wanted is not None:
        if wanted not in keys:
            raise SystemExit(f"--key {wanted!r}: not a {kind} {'target' if target else 'input'} (have {keys})")
        return wanted
    if not keys:
        raise SystemExit(f"the model has no {kind} key")
    return next((k for k in keys if prefer in k), keys[0])


def load_pixels(args: argparse.Namespace, pipe: Any, key: str) -> tuple:
    """(normalised (3, S, S) pixels for ``key``, the (S, S, 3) uint8 picture, where they came from)."""
    from fourm_core.data.pipeline import IMAGENET_MEAN, IMAGENET_STD
    from fourm_core.inference.requests import normalise_pixels

    size = int(pipe.keys[key].image_size)
    if args.store:
        from fourm_core.inference.queries import store_inputs

        pixels = store_inputs(pipe, args.store, args.index, keys=[key])[key]
        pixels = torch.as_tensor(pixels, dtype=torch.float32)
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        picture = ((pixels * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        return pixels, picture, f"store {args.store} sample {args.index}"
    from fourm_core.sources.synthetic import WorldConfig, render_scene

    picture = render_scene(args.index, WorldConfig(image_size=size)).rgb
    return normalise_pixels(picture), np.ascontiguousarray(picture), f"synthetic scene seed {args.index}"


def modality_name(registry: Any, preset: str, key: str) -> str:
    return registry.model_keys(preset)[key][0].name


# ------------------------------------------------------------------------------------------------ cases


def parallel_step(key: str, scheme: str, steps: int, cfg_scale: float = 1.0) -> Any:
    """ml-4m's default image settings: temperature 0.5 decaying linearly."""
    from fourm_core.inference.schedule import StepConfig

    return StepConfig(
        target=key, scheme=scheme, num_steps=steps, temperature=0.5, temperature_schedule="linear", cfg_scale=cfg_scale
    )


def sequence_step(key: str, tokens: int) -> Any:
    from fourm_core.inference.schedule import StepConfig

    return StepConfig(target=key, scheme="autoregressive", temperature=0.5, max_tokens=tokens)


def generate_case(sampler: Any, inputs: dict, step: Any, batch: int, use_cache: bool = True) -> Callable[[int], Any]:
    return lambda seed: sampler.generate(inputs, [step], seed=seed, batch_size=batch, use_cache=use_cache)


def latency_row(times: Sequence[float], tokens: int) -> dict[str, Any]:
    """Latency spread per generation and generated tokens/s (from the median latency)."""
    s = spread(times)
    return {"latency_s": s, "tokens": tokens, "tokens_per_s": round(tokens / s["median"], 1)}


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", help="a trained run (FourMNetwork.from_pretrained); default: untrained demo-size model"
    )
    parser.add_argument("--tokenizers", help="trained tokenizers (end-to-end section)")
    parser.add_argument("--vocab", help="text vocabulary (default for sizes and store reading: the demo's)")
    parser.add_argument("--store", help="read the input picture from this store (else a synthetic scene)")
    parser.add_argument("--index", type=int, default=0, help="store sample / synthetic scene seed")
    parser.add_argument("--image-key", help="image-token target (default: a depth key, else the first)")
    parser.add_argument("--global-key", help="global-token target (default: the first)")
    parser.add_argument("--sequence-key", help="sequence target (default: a caption key, else the first)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--steps", type=int, default=8, help="MaskGIT / ROAR steps of the multi-step cases")
    parser.add_argument("--seq-tokens", type=int, default=32, help="forced length of the sequence target")
    parser.add_argument("--lengths", default="16,32,48", help="autoregressive lengths, with and without the cache")
    parser.add_argument("--cfg-scale", type=float, default=3.0)
    parser.add_argument("--out-dir", default=None, help="default benchmarks/results")
    parser.add_argument("--date", default=None, help="date part of the file names (default: today, UTC)")
    parser.add_argument("--only", choices=["constrained"], help="run one section only (see the module docstring)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(old_threads)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from fourm_core.registry import Registry
    from fourm_core.vocab import TextVocabulary

    registry = Registry()
    vocab_path = args.vocab or (DEMO_VOCAB if DEMO_VOCAB.is_file() else None)
    vocabulary = TextVocabulary.load(vocab_path) if vocab_path else None
    if vocabulary is None and args.only == "constrained":  # grammars need a vocabulary: the conformance suite's
        from fourm_core.testing.checks import conformance_vocabulary

        vocabulary = conformance_vocabulary(registry)
    machine = machine_record(args.threads)
    pipe, model_note = build_pipeline(args, registry, vocabulary)
    model, preset, info = pipe.network, pipe.preset, pipe.keys
    pixel_key = pick_key(info, "pixels", None, "rgb", target=False)
    image_key = pick_key(info, "image_tokens", args.image_key, "depth")
    global_key = pick_key(info, "global_tokens", args.global_key, "global")
    seq_key = pick_key(info, "sequence", args.sequence_key, "caption")
    pixels, picture, input_note = load_pixels(args, pipe, pixel_key)
    inputs = {pixel_key: pixels}
    sampler = pipe.sampler(stop_ids=())  # decode every sequence to its limit: equal token counts
    n_image, n_global = info[image_key].max_tokens, info[global_key].max_tokens
    seq_max = info[seq_key].max_tokens
    seq_tokens = min(args.seq_tokens, seq_max)
    steps = min(args.steps, n_image)
    lengths = sorted({min(int(x), seq_max) for x in args.lengths.split(",")})
    batches = [int(b) for b in args.batch_sizes.split(",")]

    sequence_keys = [k for k, v in info.items() if v.kind.value == "sequence" and v.target]
    grammar_cases, grammar_meta = constrained_cases(pipe, inputs, sequence_keys, batches, seq_tokens, sequence_step)
    if args.only == "constrained":
        return _constrained_only(args, pipe, machine, model_note, input_note, grammar_cases, grammar_meta)

    # ---- every timed case of sections 1-3, keyed by name; (section, label, key, tokens per sample)
    cases: dict[str, Callable[[int], Any]] = dict(grammar_cases)
    meta: dict[str, tuple[str, str, str, int, int]] = {}
    for b in batches:
        target_cases = [
            ("image maskgit 1 step", image_key, parallel_step(image_key, "maskgit", 1), n_image),
            (f"image maskgit {steps} steps", image_key, parallel_step(image_key, "maskgit", steps), n_image),
            (f"image roar {steps} steps", image_key, parallel_step(image_key, "roar", steps), n_image),
            ("global maskgit 1 step", global_key, parallel_step(global_key, "maskgit", 1), n_global),
            (
                f"sequence autoregressive {seq_tokens} tokens (cache)",
                seq_key,
                sequence_step(seq_key, seq_tokens),
                seq_tokens,
            ),
        ]
        for label, key, step, n in target_cases:
            cases[f"targets/{label}/b{b}"] = generate_case(sampler, inputs, step, b)
            meta[f"targets/{label}/b{b}"] = ("targets", label, key, n, b)
        for length in lengths:
            for cached in (True, False):
                name = f"kv/{length}/{'cache' if cached else 'no cache'}/b{b}"
                cases[name] = generate_case(sampler, inputs, sequence_step(seq_key, length), b, use_cache=cached)
                meta[name] = ("kv_cache", f"{length} tokens", seq_key, length, b)
        name = f"cfg/{args.cfg_scale:g}/b{b}"
        cases[name] = generate_case(sampler, inputs, parallel_step(image_key, "maskgit", steps, args.cfg_scale), b)
        meta[name] = ("cfg", f"image maskgit {steps} steps, cfg {args.cfg_scale:g}", image_key, n_image, b)

    # ---- section 4: the user path, only when a trained model and its tokenizers are there
    e2e_note = None
    if args.model and args.tokenizers and vocabulary is not None:
        from fourm_core.inference.requests import build_inputs
        from fourm_core.inference.schedule import default_schedule

        names = [modality_name(registry, preset, k) for k in (pixel_key, image_key, seq_key)]
        raw = {names[0]: picture}
        schedule = default_schedule(info, [pipe.resolve(n) for n in names[1:]])
        built = dict(build_inputs(pipe, raw))
        plain = pipe.sampler()  # default stop ids, as Pipeline.generate uses
        cases["e2e/run_generation"] = lambda seed: pipe.generate([raw], names[1:], seed=seed)
        cases["e2e/sampler only"] = lambda seed: plain.generate(built, schedule, seed=seed)
        e2e_targets = names[1:]
    else:
        e2e_note = "skipped: needs --model, --tokenizers and --vocab"

    times = time_interleaved(cases, args.repeats, args.warmup)

    # ---- summaries
    targets, kv, cfg = [], [], []
    for b in batches:
        for name, (section, label, key, n, bb) in meta.items():
            if bb != b or section != "targets":
                continue
            targets.append({"case": label, "key": key, "batch": b, **latency_row(times[name], b * n)})
        for length in lengths:
            hit, miss = times[f"kv/{length}/cache/b{b}"], times[f"kv/{length}/no cache/b{b}"]
            kv.append(
                {
                    "length": length,
                    "key": seq_key,
                    "batch": b,
                    "cache": latency_row(hit, b * length),
                    "no_cache": latency_row(miss, b * length),
                    "speedup": paired_ratio(miss, hit),
                }
            )
        base = times[f"targets/image maskgit {steps} steps/b{b}"]
        guided = times[f"cfg/{args.cfg_scale:g}/b{b}"]
        cfg.append(
            {
                "case": f"image maskgit {steps} steps",
                "key": image_key,
                "batch": b,
                "scale_1": latency_row(base, b * n_image),
                f"scale_{args.cfg_scale:g}": latency_row(guided, b * n_image),
                "cfg_scale": args.cfg_scale,
                "ratio": paired_ratio(guided, base),
            }
        )
    if e2e_note is None:
        full, core = times["e2e/run_generation"], times["e2e/sampler only"]
        (result,) = cases["e2e/run_generation"](0)
        end_to_end: dict[str, Any] = {
            "targets": e2e_targets,
            "batch": 1,
            "schedule": [s.model_dump(exclude_defaults=True) for s in schedule.steps],
            "run_generation_s": spread(full),
            "sampler_only_s": spread(core),
            "overhead_s": spread([a - c for a, c in zip(full, core, strict=True)]),
            "sampler_share": paired_ratio(core, full),
            "example": {
                name: (
                    f"{out.text!r} ({int((out.ids != PAD_ID).sum())} ids)"
                    if out.text is not None
                    else f"{out.ids.numel()} ids"
                )
                for name, out in result.items()
            },
        }
    else:
        end_to_end = {"skipped": e2e_note}

    machine["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    params = sum(p.numel() for p in model.parameters())
    record = {
        "benchmark": NAME,
        "machine": machine,
        "model": {"source": model_note, "preset": preset, "params_m": round(params / 1e6, 2)},
        "input": {"key": pixel_key, "source": input_note},
        "keys": {"image": image_key, "global": global_key, "sequence": seq_key},
        "repeats": args.repeats,
        "warmup": args.warmup,
        "batch_sizes": batches,
        "stop_ids": "none (sequences decoded to the length limit), except end_to_end",
        "targets": targets,
        "kv_cache": kv,
        "cfg": cfg,
        "end_to_end": end_to_end,
        "constrained": constrained_rows(times, grammar_meta),
    }
    markdown = to_markdown(record)
    stem = result_stem(NAME, args.out_dir, args.date)
    json_path, md_path = write_results(stem, record, markdown)
    print(markdown)
    print(f"\nwrote {json_path} and {md_path}")
    return record


def _lat(row: dict[str, Any]) -> str:
    s = row["latency_s"]
    return f"{s['median'] * 1e3:.1f} ({s['min'] * 1e3:.1f}..{s['max'] * 1e3:.1f})"


def _ratio(s: dict[str, float]) -> str:
    return f"{s['median']:.2f} ({s['min']:.2f}..{s['max']:.2f})"


def to_markdown(record: dict[str, Any]) -> str:
    m = record["machine"]
    head = (
        f"# Generation latency ({record['model']['source']}, {record['model']['params_m']}M params)\n\n"
        f"{m['arch']}, {m['cpus']} cores, {m['threads']} torch threads, torch {m['torch']}, load "
        f"{m['load_average_1min_at_start']} at start, {m.get('load_average_1min_at_end', '?')} at end; input "
        f"{record['input']['key']} from {record['input']['source']}; median of {record['repeats']} interleaved "
        "repeats (min..max). "
        "Latency is per generation of a whole batch; tokens/s = batch x tokens / median latency.\n"
    )
    parts = [head, "## Per target type\n"]
    parts.append(
        markdown_table(
            ["case", "key", "batch", "tokens", "latency ms", "tokens/s"],
            [
                [r["case"], r["key"], r["batch"], r["tokens"], _lat(r), f"{r['tokens_per_s']:.0f}"]
                for r in record["targets"]
            ],
        )
    )
    parts.append("\n## Autoregressive: key/value cache vs full recomputation\n")
    parts.append(
        markdown_table(
            ["length", "batch", "cache ms", "cache tok/s", "no cache ms", "no cache tok/s", "speed-up"],
            [
                [
                    r["length"],
                    r["batch"],
                    _lat(r["cache"]),
                    f"{r['cache']['tokens_per_s']:.0f}",
                    _lat(r["no_cache"]),
                    f"{r['no_cache']['tokens_per_s']:.0f}",
                    _ratio(r["speedup"]),
                ]
                for r in record["kv_cache"]
            ],
        )
    )
    parts.append("\n## Classifier-free guidance cost\n")
    parts.append(
        markdown_table(
            ["case", "batch", "cfg 1 ms", "cfg scale", "guided ms", "ratio"],
            [
                [
                    r["case"],
                    r["batch"],
                    _lat(r["scale_1"]),
                    f"{r['cfg_scale']:g}",
                    _lat(r[f"scale_{r['cfg_scale']:g}"]),
                    _ratio(r["ratio"]),
                ]
                for r in record["cfg"]
            ],
        )
    )
    parts.append("\n## End to end (`run_generation`, picture -> targets, incl. tokenizer decoding)\n")
    e = record["end_to_end"]
    if "skipped" in e:
        parts.append(e["skipped"])
    else:

        def ms(s: dict[str, float]) -> str:
            return f"{s['median'] * 1e3:.1f} ({s['min'] * 1e3:.1f}..{s['max'] * 1e3:.1f})"

        parts.append(
            markdown_table(
                [
                    "targets",
                    "batch",
                    "run_generation ms",
                    "sampler only ms",
                    "checks + inputs + decode ms",
                    "sampler share",
                ],
                [
                    [
                        ", ".join(e["targets"]),
                        e["batch"],
                        ms(e["run_generation_s"]),
                        ms(e["sampler_only_s"]),
                        ms(e["overhead_s"]),
                        _ratio(e["sampler_share"]),
                    ]
                ],
            )
        )
        parts.append("\nexample (seed 0): " + "; ".join(f"{k}: {v}" for k, v in e["example"].items()))
    parts.append("\n## Grammar-constrained vs unconstrained sequences (same forced length)\n")
    parts.append(constrained_markdown(record["constrained"]) if record["constrained"] else "skipped: no vocabulary")
    return "\n".join(parts) + "\n"


def _constrained_only(
    args: argparse.Namespace, pipe: Any, machine: dict, model_note: str, input_note: str, cases: dict, meta: dict
) -> dict[str, Any]:
    """Section 5 alone, written as ``<date>-<machine>-constrained.{json,md}``."""
    times = time_interleaved(cases, args.repeats, args.warmup)
    machine["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    record = {
        "benchmark": "constrained",
        "machine": machine,
        "model": model_note,
        "input": input_note,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "stop_ids": "none: every sequence decoded to --seq-tokens, with and without its grammar",
        "constrained": constrained_rows(times, meta, pipe, args.repeats),
    }
    m = machine
    markdown = (
        f"# Grammar-constrained vs unconstrained autoregressive decoding ({model_note})\n\n"
        f"{m['arch']}, {m['cpus']} cores, {m['threads']} torch threads, torch {m['torch']}, load "
        f"{m['load_average_1min_at_start']} at start, {m['load_average_1min_at_end']} at end; input {input_note}; "
        f"median of {args.repeats} interleaved repeats (min..max); ratio = constrained / unconstrained latency, "
        "paired per repeat.\n\n" + constrained_markdown(record["constrained"]) + "\n"
    )
    json_path, md_path = write_results(result_stem("constrained", args.out_dir, args.date), record, markdown)
    print(markdown)
    print(f"\nwrote {json_path} and {md_path}")
    return record


if __name__ == "__main__":
    main()
