"""Smoke run of ``fourm generate`` with the official 4M-21 B and its tokenizers at their REAL sizes (random weights).

What a user with the published weights runs, at the published cost, without the network: a hub cache is built under
FOLDER by :func:`fourm_core.testing.official_hub.build_official_hub_cache` (``EPFL-VILAB/4M-21_B`` at
``fm_base_12e_12d_swiglu_nobias`` with 4M-21's 19 input / 17 target keys, 842.6M parameters; each target's
``EPFL-VILAB/4M_tokenizers_*`` repo at its published configuration: ViT-B VQ-VAEs, the patched U-Net DiVAEs,
BottleneckMLP/Memcodes), then ``fourm generate --model EPFL-VILAB/4M-21_B --tokenizers official`` runs in a
subprocess on a sample photo with ``HF_HUB_CACHE=FOLDER/hub`` and ``HF_HUB_OFFLINE=1``, and the wall time of every
stage is printed: building each repo, loading the model, each target (sampling + decoding, tokenizer loading
included), the whole command, and the command's peak memory. The cache is deleted afterwards unless ``--keep``.

Usage (about 12 GB of RAM and 5 GB of disk; several minutes on two cores)::

    timeout 1500 .venv/bin/python tools/official_smoke.py /tmp/official-smoke \\
        --vocab ../shared/data/ml-4m/text_tokenizer_4m_wordpiece_30k.json [--targets depth,caption] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

TARGETS = "caption,det,depth,normal,semseg,human_poses,sam_instance,dinov2_global,color_palette,metadata"
MODEL = "EPFL-VILAB/4M-21_B"


def sample_photo(path: Path) -> Path:
    """scikit-image's astronaut (512 x 512, public domain) as a JPEG: a real photo, not a synthetic scene."""
    import skimage.data
    from PIL import Image

    Image.fromarray(skimage.data.astronaut()).save(path, quality=90)
    return path


def build(cache: Path, targets: list[str]) -> list[tuple[str, float]]:
    """The hub cache at full size, one repo at a time (each timed): the targets' tokenizers, then the model."""
    from fourm_core.registry import Registry
    from fourm_core.testing.official_hub import build_official_hub_cache

    registry = Registry()
    needed = []
    for name in targets:
        official = registry.get(name).spec.official if name in registry.names() else None
        if official is not None and official.hub_id:
            needed.append(name)
    timings = []
    for name in needed:
        started = time.perf_counter()
        built = build_official_hub_cache(cache, model_repo=None, tokenizers=(name,), size="full", registry=registry)
        (hub_id,) = built["tokenizers"]
        timings.append((f"write {hub_id}", time.perf_counter() - started))
    started = time.perf_counter()
    build_official_hub_cache(cache, model_repo=MODEL, tokenizers=(), size="full", registry=registry)
    timings.append((f"write {MODEL}", time.perf_counter() - started))
    return timings


def generate(cache: Path, photo: Path, vocab: Path, targets: str, out: Path, threads: int) -> dict:
    """``fourm generate`` in a subprocess, offline on the cache; its wall time, peak memory and what it printed."""
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads))
    command = [sys.executable, "-m", "fourm_core.apps.cli.main", "generate", "--model", MODEL]
    command += ["--tokenizers", "official", "--vocab", str(vocab), "--input", f"rgb={photo}"]
    command += ["--targets", targets, "--out", str(out), "--threads", str(threads), "--seed", "0"]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    return {"rc": done.returncode, "wall": wall, "peak_gb": peak_gb, "stdout": done.stdout, "stderr": done.stderr}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="scratch folder for the hub cache and the outputs (created)")
    parser.add_argument("--vocab", type=Path, default=os.environ.get("FOURM_OFFICIAL_VOCAB"), help="ml-4m's WordPiece")
    parser.add_argument("--targets", default=TARGETS, help=f"comma-separated targets (default: {TARGETS})")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the generate command")
    parser.add_argument("--keep", action="store_true", help="keep the cache and outputs")
    args = parser.parse_args(argv)
    if args.vocab is None or not args.vocab.is_file():
        parser.error("--vocab: ml-4m's text_tokenizer_4m_wordpiece_30k.json is needed (or $FOURM_OFFICIAL_VOCAB)")
    folder = args.folder.resolve()
    cache, out = folder / "hub", folder / "out"
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, float]] = []
    try:
        rows += build(cache, args.targets.split(","))
        size_gb = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file() and not p.is_symlink()) / 1024**3
        print(f"hub cache: {size_gb:.2f} GB under {cache}", flush=True)
        photo = sample_photo(folder / "photo.jpg")
        run = generate(cache, photo, args.vocab, args.targets, out, args.threads)
        print(run["stdout"][-6000:])
        if run["rc"] != 0:
            print(run["stderr"][-4000:], file=sys.stderr)
            return int(run["rc"])
        loaded = [line for line in run["stdout"].splitlines() if "loaded in" in line]
        if loaded:
            rows.append(("load model + vocabulary", float(loaded[0].split("loaded in")[1].split()[0])))
        record = json.loads((out / "outputs.json").read_text())
        rows += [(f"target {name}", seconds) for name, seconds in record.get("seconds", {}).items()]
        rows.append(("fourm generate (whole command)", run["wall"]))
        files = sorted(p.name for p in out.iterdir())
        print(f"wrote {len(files)} files: {', '.join(files)}")
        print(f"peak memory of the command: {run['peak_gb']:.1f} GB")
        print("\n| stage | wall s |\n|---|---|")
        for label, seconds in rows:
            print(f"| {label} | {seconds:.1f} |")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
