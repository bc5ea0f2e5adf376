"""The demo's photo section: scikit-image's sample photos through the photo path (ingest, plan, label).

Why: the synthetic world is the demo's embedded default because it has exact ground truth, but 4M-21's data story is
pseudo-labeling real photos with teachers. This stage ingests a few bundled photos (no download), plans labeling
(which labeler, which teacher weights, or why a modality is skipped) and runs whatever teachers can run: cached hub
weights when the machine has them, else random-init stand-ins, only because the demo opts in
(``DEMO_LABEL_OPTIONS``), and the record says so per modality. It also records which modalities and model keys of the
synthetic world were labelled by random-init teachers, so the report marks every number built on them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from fourm_core.apps.demo.settings import DEMO_LABEL_OPTIONS
from fourm_core.registry import Registry

__all__ = ["DEMO_PHOTOS", "PHOTO_JSON", "RANDOM_INIT_JSON", "random_init_record", "run_photo_section"]

#: scikit-image's bundled colour photos the section ingests (a person, a cup, a cat, a rocket)
DEMO_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
#: their store's image size and preset (small: this section must stay a minute or two on a CPU)
PHOTO_SIZE = 64
PHOTO_PRESET = "tiny"
#: the section's folder and record in the demo's output (what the report reads)
PHOTO_DIR = "photos"
PHOTO_JSON = "photos.json"
#: which world modalities and model keys come from random-init teachers (the report marks their numbers)
RANDOM_INIT_JSON = "random_init.json"


def _weights(plan: Any) -> str:
    """Where the labels' teacher weights came from, in words: hub weights, random-init (and why), or none."""
    prov = plan.provenance or {}
    if not plan.labeler:
        return "skipped"
    if plan.labeler == "source":
        return "no model (from the photo)"
    if not plan.model_id and "teacher" not in prov:
        return "no model (computed)"
    weights = str(prov.get("weights") or plan.weights or "")
    if prov.get("weights_source") == "random" or weights.startswith("random"):
        return f"{weights}: random-init teacher (the demo allows them; no cached weights)"
    return weights or "hub"


def _write_photos(folder: Path) -> list[Path]:
    import skimage.data
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in DEMO_PHOTOS:
        path = folder / f"{name}.png"
        if not path.exists():
            Image.fromarray(getattr(skimage.data, name)()).save(path)
        paths.append(path)
    return paths


def run_photo_section(registry: Registry, out: Path, console: Console, workers: int = 1) -> dict[str, Any]:
    """Ingest :data:`DEMO_PHOTOS`, plan and label them with :data:`DEMO_LABEL_OPTIONS`; write and return the record
    (per modality: labeler, model id, weights, samples done / failed, seconds, why skipped)."""
    from fourm_core.labeling.runner import label_store, plan_labeling
    from fourm_core.sources.protocol import SourceSettings, build_source
    from fourm_core.storage.source_writer import create_source_store, write_source
    from fourm_core.storage.store import AlignedStore
    from fourm_core.vocab import build_manifest

    start = time.perf_counter()
    folder = out / PHOTO_DIR
    _write_photos(folder / "images")
    settings = SourceSettings(location=str(folder / "images"), image_size=PHOTO_SIZE, n=None, seed=0, options={})
    adapter = build_source("image_folder", settings)
    manifest = build_manifest(registry, PHOTO_PRESET)
    store = create_source_store(folder / "photos.zarr", adapter, PHOTO_SIZE, PHOTO_PRESET, 4, manifest)
    write_source(store, adapter, 1)
    planned = {p.name: p for p in plan_labeling(store, registry, options=DEMO_LABEL_OPTIONS)}
    plans = label_store(store.path, registry=registry, workers=workers, options=DEMO_LABEL_OPTIONS)
    store = AlignedStore.open(store.path, mode="r")
    random = {p.name for p in plans if p.labeler and (p.provenance or {}).get("weights_source") == "random"}
    rows = []
    for plan in plans:
        before = planned.get(plan.name)
        rows.append(
            {
                "modality": plan.name,
                "labeler": plan.labeler,
                "model_id": plan.model_id or (before.model_id if before else None),
                "weights": _weights(plan)
                if (plan.provenance or {}).get("from") not in random
                else f"copied from {plan.provenance['from']}: random-init teacher",
                "done": plan.done,
                "failed": plan.failed,
                "seconds": round(plan.seconds, 2),
                "skip_reason": plan.skip_reason,
                "text": _first_text(store, plan.name) if plan.labeler else None,
            }
        )
    record = {
        "photos": list(DEMO_PHOTOS),
        "image_size": PHOTO_SIZE,
        "preset": PHOTO_PRESET,
        "options": DEMO_LABEL_OPTIONS,
        "modalities": rows,
        "seconds": round(time.perf_counter() - start, 2),
    }
    (folder / PHOTO_JSON).write_text(json.dumps(record, indent=2) + "\n")
    teachers = [r for r in rows if r["labeler"] and r["model_id"]]
    random = [r["modality"] for r in teachers if "random-init" in r["weights"]]  # copies of them included
    console.print(
        f"[bold]photos[/bold] {len(DEMO_PHOTOS)} scikit-image photos in {folder}: "
        f"{sum(1 for r in rows if r['labeler'])} modalities labelled, {len(teachers)} by teachers "
        f"({len(teachers) - len(random)} with hub weights, {len(random)} random-init), "
        f"{sum(1 for r in rows if not r['labeler'])} skipped, {record['seconds']:.1f}s",
        highlight=False,
    )
    if random:
        console.print(
            f"  [yellow]random-init teachers[/yellow] (the demo allows them; no cached weights): {', '.join(random)}"
            " - their photo labels are stand-ins; `fourm data label --plan` names each model and its `hf download`",
            highlight=False,
        )
    for r in rows:
        if not r["labeler"]:
            console.print(f"  skipped {r['modality']}: {escape(r['skip_reason'] or '')}", highlight=False)
    return record


def _first_text(store: Any, name: str) -> str | None:
    """The first photo's stored free text (a generated caption), for the report; None for other modalities."""
    part = f"{name}/raw"
    if part not in store.parts() or store.state(part)[0] != 1:
        return None
    texts = [v for v in store.read(part, 0).values() if isinstance(v, str)]
    return texts[0][:200] if texts else None


def random_init_record(registry: Registry, plans: list[Any], preset: str) -> dict[str, list[str]]:
    """The world's modalities labelled by a random-init teacher, or copied from one (a global embedding copies a
    teacher's CLS), and their model keys: the numbers the report must mark."""
    random = {p.name for p in plans if p.labeler and (p.provenance or {}).get("weights_source") == "random"}
    random |= {p.name for p in plans if p.labeler and (p.provenance or {}).get("from") in random}
    keys = sorted({registry.get(name).model_key(preset) for name in random})
    return {"modalities": sorted(random), "keys": keys}
