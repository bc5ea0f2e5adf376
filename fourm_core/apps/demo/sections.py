"""Report sections kept apart from :mod:`fourm_core.apps.demo.report` (which assembles the page): the photo path's
labeling table, the committed benchmark results, and which numbers rest on random-init teachers.

Why the marks: the synthetic world has no real teachers' weights, so its feature maps and global embeddings come
from random-init stand-ins when the machine has no cached weights; every number built on them (retrieval, the
global-embedding columns of the Table 1-shaped evaluation, cosines to stored embeddings) says "random-init teacher"
next to it. Standard library only; nothing here names a modality.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from pathlib import Path

from fourm_core.apps.demo.report import _load, _score_table, table

__all__ = ["RANDOM_MARK", "benchmarks_section", "marked", "photo_section", "random_init"]

RANDOM_MARK = "random-init teacher"


def random_init(out: Path) -> set[str]:
    """Modality names and model keys of the world labelled by random-init teachers (``random_init.json``)."""
    record = _load(out / "random_init.json") or {}
    return set(record.get("modalities", ())) | set(record.get("keys", ()))


def marked(label: str, names: Iterable[str], random: set[str]) -> str:
    """``label`` with `` (random-init teacher)`` when any of ``names`` is in ``random``."""
    return f"{label} ({RANDOM_MARK})" if random.intersection(names) else label


def photo_section(out: Path) -> str:
    """Per modality of the photo store: the labeler, its teacher's model id, the weights it ran with, samples."""
    record = _load(out / "photos" / "photos.json")
    if not record:
        return '<p class="note">No photo section yet.</p>'
    rows, classes = [], []
    for r in record["modalities"]:
        why = r["skip_reason"] or (f"stored text of photo 0: {r['text']}" if r.get("text") else "")
        rows.append(
            (
                r["modality"],
                r["labeler"] or "-",
                r["model_id"] or "-",
                r["weights"],
                r["done"],
                r["failed"],
                r["seconds"],
                why,
            )
        )
        classes.append("bad" if "random-init" in r["weights"] else "")
    intro = (
        f'<p class="note">{len(record["photos"])} scikit-image sample photos ({escape(", ".join(record["photos"]))})'
        f" ingested at {record['image_size']} px ({escape(record['preset'])} preset) and labelled by every teacher "
        f"that can run here, in {record['seconds']:.1f} s. Teachers use cached hub weights when the machine has "
        "them; otherwise the demo (only the demo, and tests) lets them run random-initialised, marked "
        f"<b>{RANDOM_MARK}</b> below: such labels are stand-ins. <code>fourm data label --plan</code> names every "
        "teacher and the <code>hf download</code> command that fetches it; without weights and without "
        "<code>--allow-random-teachers</code> those modalities are skipped.</p>"
    )
    headers = ["modality", "labeler", "teacher (model id)", "weights", "done", "failed", "seconds", "note"]
    return intro + table(headers, rows, "photo-labels", row_class=classes)


def benchmarks_section(results: Path) -> str:
    """The newest quality benchmark and performance suite results committed under ``benchmarks/results``."""
    parts: list[str] = []
    quality = sorted(results.glob("*-quality.json"))
    if quality:
        data = _load(quality[-1])
        parts.append(
            f"<h3>Quality (<code>fourm bench quality</code>, {escape(data['date'])}, {escape(quality[-1].name)})</h3>"
        )
        parts.append(_score_table(data["rows"], "quality"))
    suite = sorted(p for p in results.glob("*.json") if p.stem.count("-") == 4)  # <date>-<machine>.json
    if suite:
        data = _load(suite[-1])
        rows = []
        for name, stage in data.get("stages", {}).items():
            measure = stage.get("rate") or stage.get("step_s") or stage.get("build_s")
            if measure:
                rows.append([name, stage.get("unit", ""), measure["median"], f"{measure['min']}..{measure['max']}"])
        parts.append(
            f"<h3>Performance (<code>benchmarks/bench_suite.py</code>, {escape(data.get('date', ''))}, "
            f"{escape(suite[-1].name)})</h3>"
        )
        parts.append(table(["stage", "unit", "median", "min..max"], rows, "performance"))
    if not parts:
        return '<p class="note">No benchmark results found next to the code.</p>'
    return '<p class="note">Measured by the benchmark commands on the date shown, not by this demo run.</p>' + "".join(
        parts
    )
