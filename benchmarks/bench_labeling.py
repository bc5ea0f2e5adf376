"""Labeling throughput per teacher (samples/s): every plugin's hub teacher, on CPU, one thread, tiny random models.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_labeling.py [--photos 8] [--repeats 3] [--out-dir DIR]

Each teacher is the tiny random model of its real library class that
:func:`fourm_core.testing.teacher_hub.build_teacher_hub_cache` writes into a temporary hub cache under the real repo
id, loaded offline through the path real weights take. A case labels ``--photos`` scikit-image sample photos (224 px,
the paper preset) in one ``label_batch`` call, i.e. batches of the plugin's batch size, each image resized once to
the teacher's own input resolution (SAM 1024, depth 518, BLIP / Mask2Former 384, D-FINE 640, feature teachers grid x
patch), the post-processing included (SAM's grid of 32 x 32 point prompts, filters and NMS; Mask2Former's semantic
inference; D-FINE's thresholds; BLIP's beam search). Build time (loading the snapshot) is reported apart.

What it says and what not: the tiny networks cost little, so these rates measure the labelers' own work around the
network (resizing, prompting, post-processing, conversion) and bound the throughput from above; the real models are
10^2 to 10^4 times larger, and labeling a dataset with them needs a GPU (``fourm data label --device cuda --dtype
bf16``). Repeats are interleaved over the teachers (``_common.time_interleaved``): compare ratios within one run.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from _common import machine_record, markdown_table, result_stem, spread, time_interleaved, write_results  # noqa: E402

#: the image the photos are stored at (the paper preset's)
IMAGE_SIZE = 224
#: scikit-image's bundled colour photos (no download)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "hubble_deep_field", "cat")


def photo_views(n: int) -> list[Any]:
    """``n`` sample views holding a scikit-image photo centre-cropped and resized to :data:`IMAGE_SIZE` as ``rgb``
    and a caption (for the text teacher)."""
    import numpy as np
    import skimage.data
    from PIL import Image

    from fourm_core.labeling.api import SampleView

    views = []
    for i in range(n):
        image = getattr(skimage.data, PHOTOS[i % len(PHOTOS)])()
        h, w = image.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        crop = Image.fromarray(image[top : top + side, left : left + side, :3])
        rgb = np.array(crop.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC), dtype=np.uint8)
        text = f"a photo of {PHOTOS[i % len(PHOTOS)].replace('_', ' ')} on a table"
        views.append(SampleView(i, {"rgb": rgb}, {"rgb": {"rgb": rgb}, "caption": {"text": text}}))
    return views


def teachers(registry: Any, cache: Path) -> dict[str, tuple[str, Any]]:
    """``"modality (labeler)" -> (model id, labeler instance)`` for every labeler that runs a hub teacher."""
    from fourm_core.labeling.api import LabelContext, build_labeler
    from fourm_core.labeling.hub_teacher import HubTeacher
    from fourm_core.testing.teacher_hub import teacher_models

    context = LabelContext(
        preset="paper",
        image_size=IMAGE_SIZE,
        source_fields=("rgb",),
        options={"device": "cpu", "dtype": "fp32", "teacher_downloads": False},
        modalities={m.name: m.spec for m in registry.modalities()},
    )
    out = {}
    for model_id, users in teacher_models(registry).items():
        for modality, lab in users:
            instance = build_labeler(lab, registry.get(modality).spec, context)
            if isinstance(instance, HubTeacher):
                out[f"{modality} ({lab.name})"] = (model_id, instance)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=8, help="samples per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out-dir", default=None, help="default benchmarks/results")
    args = parser.parse_args()

    import torch

    from fourm_core.registry import Registry
    from fourm_core.testing.teacher_hub import build_teacher_hub_cache

    torch.set_num_threads(1)
    registry = Registry(disabled={"albedo"})  # the example plugin declares no teacher
    with tempfile.TemporaryDirectory(prefix="bench-labeling-") as tmp:
        cache = Path(tmp) / "hub"
        os.environ["HF_HUB_CACHE"] = str(cache)
        os.environ["HF_HUB_OFFLINE"] = "1"
        built = build_teacher_hub_cache(cache, registry=registry)
        cases = teachers(registry, cache)
        views = photo_views(args.photos)
        build_s = {}
        for name, (_, instance) in cases.items():
            start = time.perf_counter()
            instance.network  # noqa: B018 - load the snapshot now, timed apart
            build_s[name] = time.perf_counter() - start
        times = time_interleaved(
            {name: (lambda _r, inst=inst: inst.label_batch(views)) for name, (_, inst) in cases.items()},
            repeats=args.repeats,
        )
    rows, record_rows = [], {}
    for name, (model_id, instance) in cases.items():
        rates = [args.photos / t for t in times[name]]
        rate = spread(rates, digits=2)
        prov = instance.provenance()
        size = prov.get("resolution") or f"{prov.get('max_tokens')} tokens"
        record_rows[name] = {
            "model_id": model_id,
            "library": prov.get("library"),
            "input": size,
            "batch_size": prov.get("batch_size"),
            "tiny_parameters": built[model_id].parameters,
            "build_s": round(build_s[name], 3),
            "samples_per_s": rate,
        }
        rows.append(
            [
                name,
                f"`{model_id}`",
                size,
                f"{built[model_id].parameters / 1e6:.2f}M",
                f"{rate['median']:.2f} ({rate['min']:.2f}..{rate['max']:.2f})",
                f"{build_s[name]:.2f}",
            ]
        )
    record = {
        "benchmark": "labeling",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": machine_record(1),
        "device": "cpu",
        "dtype": "fp32",
        "photos": args.photos,
        "image_size": IMAGE_SIZE,
        "repeats": args.repeats,
        "weights": "tiny random models of the real classes (build_teacher_hub_cache), not the real weights",
        "note": "real teacher sizes need a GPU: fourm data label --device cuda --dtype bf16",
        "teachers": record_rows,
    }
    headers = ["labeler", "model id", "input", "tiny params", "samples/s median (min..max)", "build s"]
    markdown = "\n".join(
        [
            "# Labeling throughput per teacher (CPU, 1 thread, tiny random models of the real classes)",
            "",
            f"{args.photos} scikit-image photos at {IMAGE_SIZE} px (paper preset) per call, {args.repeats} interleaved "
            "repeats; `benchmarks/bench_labeling.py`. The networks are tiny random models of each teacher's real "
            "library class, loaded offline from a temporary hub cache under the real id, so these rates are the "
            "labelers' own work (resizing to the teacher's input, prompting, post-processing) and an upper bound: "
            "the real models are 10^2 to 10^4 times larger, and labeling with them needs a GPU "
            "(`fourm data label --device cuda --dtype bf16`).",
            "",
            markdown_table(headers, rows),
        ]
    )
    json_path, md_path = write_results(result_stem("labeling", args.out_dir), record, markdown)
    print(markdown)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
