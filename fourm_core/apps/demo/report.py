"""The demo's report: one HTML page from what ``fourm demo`` wrote into its output folder.

:func:`write_report` reads the stages' JSON records (``timings.json``, ``conformance.json``, every
``tokenizers/*/report.json``, ``model/log.jsonl`` and ``summary.json``, ``generation/generation.json``) and the
pictures they name, and writes ``report.html``: the stage timings, the conformance summary, the tokenizer bounds,
the 4M's validation losses and curves, per held-out scene the ground truth next to the model's prediction from the
pixels for every target, the text -> global -> image chains and the retrieval hits with their similarities.

Pictures are embedded as base64 ``data:`` URIs, so the page is one self-contained file: it can be attached to an
issue, mailed or copied off the machine without the 180 MB output folder around it, and it cannot break when the
folder moves. The pictures are small (64 px scenes, tiles of 96 px), so the page stays around a megabyte.
Standard library only (``html.escape``, ``string.Template``); nothing here names a modality.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from string import Template
from typing import Any

__all__ = ["REPORT_NAME", "data_uri", "render_report", "table", "write_report"]

REPORT_NAME = "report.html"
_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

_PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>$title</title>
<style>
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.txt { display: block; max-width: 520px; max-height: 9em; overflow-y: auto; font-family: monospace;
  font-size: 12px; word-break: break-word; }
.hit { display: inline-block; width: 84px; margin: 2px; vertical-align: top; }
.cards { display: flex; flex-wrap: wrap; gap: 6px; }
figure.card { margin: 0; border: 1px solid #ddd; padding: 3px; }
figure.card figcaption { font-size: 12px; color: #444; }
img { image-rendering: pixelated; }
.note { color: #666; font-size: 13px; }
.own { background: #e6f4e6; }
.bad { color: #b00; }
nav a { margin-right: 1em; }
</style>
</head>
<body>
<h1>$title</h1>
<p class="note">$subtitle</p>
<nav>$nav</nav>
$body
</body>
</html>
""")


#: benchmark results committed next to the code (a source checkout; absent from an installed wheel)
BENCHMARK_RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def data_uri(path: str | Path) -> str:
    """A file as a base64 ``data:`` URI (PNG, SVG, JPEG by suffix)."""
    path = Path(path)
    mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def inside(out: Path, rel: object) -> Path | None:
    """``out / rel`` resolved, or None (refused) unless ``rel`` is a relative path without ``..`` that stays in
    ``out`` after symlinks. The JSON files a report reads name the pictures it inlines, and the report is a file
    one attaches or publishes: whatever they say, nothing outside the demo folder may end up in it."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        return None
    try:
        resolved = (out / rel).resolve()  # not strict: a missing picture stays inside, and is reported as missing
    except (OSError, RuntimeError):  # a symlink loop
        return None
    return resolved if resolved.is_relative_to(out.resolve()) else None


def _img(out: Path, rel: object, alt: str, width: int | None = None) -> str:
    """An ``<img>`` of a picture the demo wrote (``rel`` relative to ``out``); a note when it is missing or names
    a file outside ``out`` (:func:`inside`, never read)."""
    path = inside(out, rel) if rel else None
    if rel and path is None:
        return (
            f'<span class="note bad">({escape(alt)}: refused {escape(repr(rel)[:80])}, outside the demo folder)</span>'
        )
    if path is None or not path.is_file():
        return f'<span class="note">({escape(alt)}: no picture)</span>'
    size = f' width="{width}"' if width else ""
    return f'<img src="{data_uri(path)}" alt="{escape(alt)}" title="{escape(str(rel))}"{size}>'


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    table_id: str,
    raw: Iterable[int] = (),
    row_class: Sequence[str] | None = None,
) -> str:
    """An HTML table; cells are escaped except the columns in ``raw`` (already HTML); numbers align right."""
    raw = set(raw)
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = []
    for r, row in enumerate(rows):
        cells = []
        for c, cell in enumerate(row):
            if c in raw:
                cells.append(f"<td>{cell}</td>")
            elif isinstance(cell, (int, float)) and not isinstance(cell, bool):
                cells.append(f'<td class="num">{_num(cell)}</td>')
            else:
                cells.append(f"<td>{escape('-' if cell is None else str(cell))}</td>")
        cls = f' class="{row_class[r]}"' if row_class and row_class[r] else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f'<table id="{escape(table_id)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _num(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _metrics(values: Mapping[str, float] | None) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in (values or {}).items()) or "-"


# ------------------------------------------------------------------------------------------------ sections


def _timings(out: Path) -> str:
    timings = _load(out / "timings.json")
    if not timings:
        return '<p class="note">No stage timings (timings.json) yet.</p>'
    rows = [(f"{i}/{len(timings)}", name, float(seconds)) for i, (name, seconds) in enumerate(timings.items(), 1)]
    rows.append(("", "total", float(sum(timings.values()))))
    note = '<p class="note">Seconds per stage of the last run; a stage that reused cached outputs is fast.</p>'
    return note + table(["stage", "name", "seconds"], rows, "timings")


def _conformance(out: Path) -> str:
    results = _load(out / "conformance.json")
    if not results:
        return '<p class="note">No conformance results (conformance.json) yet.</p>'
    by_modality: dict[str, list[Mapping[str, Any]]] = {}
    for r in results:
        by_modality.setdefault(r["modality"], []).append(r)
    passed = sum(1 for r in results if r["ok"])
    rows = []
    for modality, checks in sorted(by_modality.items()):
        failed = [c for c in checks if not c["ok"]]
        rows.append(
            (
                modality,
                len(checks),
                len(checks) - len(failed),
                "; ".join(f"{c['check']}: {c['message']}" for c in failed) or "-",
            )
        )
    head = f"<p>{passed}/{len(results)} checks pass on {len(by_modality)} modalities.</p>"
    body = table(["modality", "checks", "pass", "failures"], rows, "conformance")
    opened = " open" if passed < len(results) else ""
    return f"{head}<details{opened}><summary>per modality</summary>{body}</details>"


def _tokenizers(out: Path) -> str:
    reports = [_load(p) for p in sorted((out / "tokenizers").glob("*/report.json"))]
    reports = [r for r in reports if r]
    if not reports:
        return '<p class="note">No trained tokenizers yet.</p>'
    rows = []
    for r in reports:
        ev, tr = r["evaluation"], r["training"]
        usage = ev.get("usage", {})
        rows.append(
            (
                r["name"],
                ", ".join(r.get("modalities", [])),
                r.get("family", ""),
                tr.get("steps"),
                tr.get("seconds"),
                _metrics(ev.get("bound")),
                _metrics(ev.get("baseline")),
                _metrics(ev.get("diffusion")) if "diffusion" in ev else "-",
                usage.get("perplexity"),
                f"{usage['codes_used']:.0%}" if "codes_used" in usage else "-",
            )
        )
    note = (
        '<p class="note">Each tokenizer\'s reconstruction quality on held-out scenes of the demo store (the best '
        "a 4M predicting its tokens can do), next to the baseline of predicting the training mean or majority. "
        "Originals over reconstructions: <code>tokenizers/*/reconstructions.png</code>.</p>"
    )
    headers = [
        "tokenizer",
        "modalities",
        "family",
        "steps",
        "train s",
        "bound",
        "baseline (mean)",
        "diffusion decoder",
        "perplexity",
        "codes used",
    ]
    return note + table(headers, rows, "tokenizers")


def _validation_rows(records: Sequence[Mapping[str, Any]], every: int = 2) -> tuple[list[str], list[list[Any]]]:
    val = [r for r in records if r.get("kind") == "val"]
    if not val:
        return [], []
    shown = val[::every] if val[-1] in val[::every] else [*val[::every], val[-1]]
    keys = sorted(val[0]["losses"])
    headers = ["key", *(f"step {r['step']}" for r in shown), "last / first"]
    rows = []
    for k in [*keys, "mean"]:
        values = [r["losses"].get(k) if k != "mean" else r["loss"] for r in shown]
        first, last = values[0], values[-1]
        rows.append([k, *values, round(last / first, 3) if first and last is not None else None])
    return headers, rows


def _training(out: Path) -> str:
    run = out / "model"
    summary = _load(run / "summary.json")
    if not summary:
        return '<p class="note">No trained 4M yet.</p>'
    log = run / "log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
    # the demo writes validation_first/last, benchmarks/train_world.py val_first/last
    first = summary.get("validation_first", summary.get("val_first"))
    last = summary.get("validation_last", summary.get("val_last"))
    loss = f"; mean validation loss {first:.3f} &rarr; {last:.3f}" if first is not None and last is not None else ""
    parts = [f"<p>{summary.get('steps', '?')} steps{loss}.</p>"]
    headers, rows = _validation_rows(records)
    if rows:
        parts.append(
            '<p class="note">Validation loss per model key on the held-out scenes (every other '
            "evaluation and the last).</p>"
        )
        parts.append(table(headers, rows, "validation"))
    parts.append(f"<h3>Curves</h3>{_img(out, 'model/curves.svg', 'validation curves')}")
    accuracy = summary.get("probe_token_accuracy") or {}
    if accuracy:
        parts.append("<h3>One-pass probe: every image target from the pixels</h3>")
        parts.append(
            '<p class="note">Rows: a target\'s tokenizer reconstruction of the truth, then the argmax of '
            "one decoder pass. Token accuracy per key below.</p>"
        )
        parts.append(f"<details><summary>picture</summary>{_img(out, 'model/pixels2all.png', 'one-pass')}</details>")
        parts.append(table(["key", "token accuracy"], sorted(accuracy.items()), "probe"))
    return "".join(parts)


def _generation(out: Path, record: Mapping[str, Any] | None, random: set[str] = frozenset()) -> str:
    if not record or not record.get("scenes"):
        return '<p class="note">No generations yet.</p>'
    parts = [
        '<p class="note">Each target generated from the pixels alone (MaskGIT, 8 steps, temperature 0.5 '
        "decaying linearly; sequences autoregressively). Pictures: stored ground truth | its tokenizer "
        "reconstruction (the bound) | the model's prediction. Global embeddings: cosine similarity to the "
        "stored vector. Sequences: the stored text next to the generated one, and the stored | generated value as "
        "the modality's plugin draws it (when it parses).</p>"
    ]
    seconds = record.get("target_seconds") or {}
    if seconds:
        parts.append(
            f'<p class="note">{len(seconds)} targets for {len(record["scenes"])} scenes (one batch per '
            f"target) in {sum(seconds.values()):.1f} s; stage 8 took {record.get('seconds', 0):.1f} s in "
            "all.</p>"
        )
    for scene in record["scenes"]:
        index = scene["index"]
        parts.append(f'<h3 id="scene-{index}">Held-out scene {index}</h3>')
        cards = [
            f'<figure class="card">{_img(out, scene.get("picture"), f"scene {index}", 96)}<figcaption>input '
            f"(scene {index})</figcaption></figure>"
        ]
        vectors, sequences = [], []
        for t in scene["targets"]:
            if "picture" in t:
                cards.append(
                    f'<figure class="card">{_img(out, t["picture"], t["key"])}<figcaption>'
                    f"{escape(t['key'])}</figcaption></figure>"
                )
            if "cosine_prediction" in t:
                key = t["key"] + (" (random-init teacher)" if t["key"] in random else "")
                vectors.append((key, t.get("cosine_prediction"), t.get("cosine_reconstruction")))
            elif "prediction" in t:
                generated = escape(t.get("prediction") or "")
                if not t.get("parsed", True):
                    generated += ' <span class="bad">(does not parse)</span>'
                sequences.append(
                    (
                        t["key"],
                        f'<span class="txt">{escape(t.get("truth") or "-")}</span>',
                        f'<span class="txt">{generated}</span>',
                    )
                )
        parts.append(f'<p class="note">Stored text: {escape(scene.get("text", ""))}</p>')
        parts.append(f'<div class="cards" id="generation-{index}">{"".join(cards)}</div>')
        if vectors:
            parts.append(
                table(
                    ["global key", "cosine(prediction, stored)", "cosine(tokenizer reconstruction, stored)"],
                    vectors,
                    f"generation-{index}-vectors",
                )
            )
        if sequences:
            parts.append(
                table(["sequence key", "stored", "generated"], sequences, f"generation-{index}-sequences", raw=[1, 2])
            )
    if record.get("skipped"):
        rows = sorted(record["skipped"].items())
        parts.append("<p>Targets left out:</p>" + table(["key", "why"], rows, "generation-skipped"))
    return "".join(parts)


def _chains(out: Path, record: Mapping[str, Any] | None, random: set[str] = frozenset()) -> str:
    chains = (record or {}).get("chains") or []
    if not chains:
        return '<p class="note">No chains (the model needs a text input, a global-token and an image-token key).</p>'
    steps = chains[0]["steps"]
    order = " &rarr; ".join(escape(s["target"]) for s in steps)
    mark = " (random-init teacher)" if random.intersection(s["target"] for s in steps) else ""
    parts = [
        f"<p>Schedule: the stored text of a held-out scene &rarr; {order}; each step MaskGIT "
        f"(<code>{escape(json.dumps(steps))}</code>). Picture: the scene's real pixels | the generated "
        "image. Nearest: the store scene closest to the generated global embedding.</p>"
    ]
    rows = []
    for c in chains:
        nearest = c.get("nearest")
        near = (
            f"{_img(out, nearest['picture'], 'nearest', 64)}<br>scene {nearest['index']}, cosine "
            f"{nearest['similarity']:.3f}{mark}"
            if nearest
            else "-"
        )
        rows.append((c["scene"], c["text"], _img(out, c["picture"], f"chain {c['scene']}"), near, c.get("seconds")))
    parts.append(
        table(["scene", "input text", "real | generated", "nearest scene", "seconds"], rows, "chains", raw=[2, 3])
    )
    return "".join(parts)


def _retrieval(out: Path, record: Mapping[str, Any] | None, random: set[str] = frozenset()) -> str:
    retrieval = (record or {}).get("retrieval")
    if not retrieval:
        return '<p class="note">No retrieval (the model needs a global-token key labelled in the store).</p>'
    parts = [
        f"<p>Index: the stored <code>{escape(retrieval['key'])}</code> embeddings of all {retrieval['size']} "
        "scenes (cosine, usearch). Each query: the model predicts that key's tokens from the query (the "
        "pixels of a held-out scene, or its stored text), its tokenizer decodes them into a vector, the index "
        "returns the nearest scenes. The query scene is in the store, so a perfect model finds it first "
        "(green).</p>"
    ]
    mark = " random-init teacher" if retrieval["key"] in random else ""
    if mark:
        parts.append(
            '<p class="bad">The indexed embeddings come from a random-init teacher (the demo allows them): every '
            "cosine and hit below measures the pipeline, not a real teacher's features.</p>"
        )
    rows, row_class = [], []
    for q in retrieval["queries"]:
        query = _img(out, q["picture"], f"scene {q['scene']}", 64) if q.get("picture") else escape(q.get("text", ""))
        hits = "".join(
            '<div class="hit">'
            + _img(out, h["picture"], f"hit {h['index']}", 64)
            + f"<br>#{h['index']} <b>{h['similarity']:.3f}</b>{mark}"
            + f"{' (own)' if h['index'] == q['scene'] else ''}</div>"
            for h in q["hits"]
        )
        texts = "<br>".join(f"#{h['index']}: {escape(h.get('text', ''))}" for h in q["hits"])
        rows.append(
            (
                q["by"],
                q["scene"],
                query,
                f'<div style="white-space:nowrap">{hits}</div>',
                f'<span class="note">{texts}</span>',
            )
        )
        row_class.append("own" if q["hits"] and q["hits"][0]["index"] == q["scene"] else "")
    parts.append(
        table(
            ["query by", "scene", "query", f"hits (store index, cosine{mark and ';' + mark})", "hit texts"],
            rows,
            "retrieval",
            raw=[2, 3, 4],
            row_class=row_class,
        )
    )
    return "".join(parts)


def _score_table(rows: Mapping[str, Mapping[str, Any]], table_id: str, random: set[str] = frozenset()) -> str:
    """Rows of ``{modality: {model: metrics, bound: metrics}}`` as one table: a column per (modality, metric), a
    row per model, and the tokenizer bound last (taken from the first row that has the modality); the columns of
    modalities in ``random`` (labelled by random-init teachers) say so in their header."""
    columns = [(m, k) for scores in rows.values() for m, s in scores.items() for k in s["model"]]
    columns = list(dict.fromkeys(columns))
    body = [[name, *(scores.get(m, {}).get("model", {}).get(k) for m, k in columns)] for name, scores in rows.items()]
    bound = ["tokenizer bound"]
    for m, k in columns:
        first = next((s[m] for s in rows.values() if m in s), {})
        bound.append(first.get("bound", {}).get(k))
    headers = [f"{m} {k}" + (" (random-init teacher)" if m in random else "") for m, k in columns]
    return table(["model", *headers], [*body, bound], table_id)


def _evaluation(record: Mapping[str, Any] | None, random: set[str] = frozenset()) -> str:
    rows = (record or {}).get("evaluation")
    if not rows:
        return '<p class="note">No held-out evaluation yet.</p>'
    n = next(iter(next(iter(rows.values())).values()), {}).get("n", "?")
    return (
        f'<p class="note">The demo\'s 4M on its {n} held-out scenes, every target predicted from the pixels '
        "(<code>fourm_core.evaluation.evaluate</code>: maps, embeddings and item sequences): one pass, the same "
        "with several draws fused per pixel, and the "
        "tokenizer bound (decode(encode(truth)), which no token predictor beats). The other rows of the "
        "paper's Table 1 (4M-7, specialists) need training runs of their own: see the benchmarks below.</p>"
        + _score_table(rows, "evaluation", random)
    )


def render_report(out: str | Path) -> str:
    """The HTML text of the report of the demo output folder ``out`` (sections without data say so)."""
    from fourm_core.apps.demo.sections import benchmarks_section, photo_section, random_init

    out = Path(out)
    record = _load(out / "generation" / "generation.json")
    random = random_init(out)
    info = _load(out / "store_info.json") or {}
    sections = [
        ("timings", "Stage timings", _timings(out)),
        ("conformance-summary", "Plugin conformance", _conformance(out)),
        ("tokenizer-bounds", "Tokenizer bounds", _tokenizers(out)),
        ("training", "The tiny 4M: validation", _training(out)),
        ("generation", "Generation from the pixels of held-out scenes", _generation(out, record, random)),
        ("chain", "Text &rarr; global embedding &rarr; image", _chains(out, record, random)),
        ("retrieval-hits", "Retrieval", _retrieval(out, record, random)),
        ("held-out-evaluation", "Held-out evaluation (Table 1 shape)", _evaluation(record, random)),
        ("photos", "Photos: the teachers on scikit-image sample photos", photo_section(out)),
        ("benchmarks", "Benchmarks", benchmarks_section(BENCHMARK_RESULTS)),
    ]
    body = "".join(f'<section id="{sid}"><h2>{title}</h2>{html}</section>' for sid, title, html in sections)
    nav = "".join(f'<a href="#{sid}">{title}</a>' for sid, title, _ in sections)
    samples = info.get("n_samples")
    subtitle = (
        f"Written by <code>fourm demo</code> from {escape(str(out.resolve()))}"
        + (f"; the synthetic world has {samples} scenes" if samples else "")
        + "."
    )
    return _PAGE.substitute(title="fourm demo report", subtitle=subtitle, nav=nav, body=body)


def write_report(out: str | Path, path: str | Path | None = None) -> Path:
    """Write :func:`render_report` of ``out`` to ``path`` (default ``out/report.html``); returns the path."""
    out = Path(out)
    path = Path(path) if path is not None else out / REPORT_NAME
    path.write_text(render_report(out), encoding="utf-8")
    return path
