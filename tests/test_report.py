"""The demo's ``report.html`` in a real browser: headless Chromium loads the page, a probe script counts the pictures
that decoded (``naturalWidth > 0``) and the tables, and the test reads them back from the dumped DOM.

Here the report is written from a small hand-made demo output folder (seconds, no training); ``test_demo.py`` runs
the same browser check on the report of its tiny end-to-end demo. Without Chromium (Debian ``chromium``) the check
is skipped, unless ``FOURM_REQUIRE_CHROMIUM=1`` (CI), where a missing browser fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fourm_core.apps.demo.report import REPORT_NAME, write_report

#: tables every complete demo report has (ids of the <table> elements)
REPORT_TABLES = ("timings", "conformance", "tokenizers", "validation", "chains", "retrieval", "evaluation")

_PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const probe = document.createElement("pre");
  probe.id = "fourm-probe";
  probe.textContent = JSON.stringify({
    images: images.length,
    loaded: images.filter((i) => i.complete && i.naturalWidth > 0).length,
    broken: images.filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.alt),
    tables: Array.from(document.querySelectorAll("table[id]")).map((t) => t.id),
    rows: Array.from(document.querySelectorAll("table[id] tbody tr")).length,
  });
  document.body.appendChild(probe);
});
</script>"""


def chromium() -> str | None:
    """The Chromium binary, or ``None``; fails instead when ``FOURM_REQUIRE_CHROMIUM=1`` and there is none."""
    found = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if found is None and os.environ.get("FOURM_REQUIRE_CHROMIUM") == "1":
        pytest.fail("FOURM_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install chromium chromium-driver)")
    return found


def browser_check(report: Path, browser: str) -> dict[str, Any]:
    """Load ``report`` (a copy with the probe script, next to it) in headless Chromium; the probe's counts."""
    page = report.with_name("report.probe.html")
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    profile = report.parent / ".chromium-profile"
    command = [
        browser,
        "--headless=new",
        "--disable-gpu",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        page.unlink(missing_ok=True)
        shutil.rmtree(profile, ignore_errors=True)
    match = re.search(r'<pre id="fourm-probe">(.*?)</pre>', done.stdout, re.S)
    assert match, f"no probe output from chromium (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(unescape(match.group(1)))


def assert_report_loads(report: Path, min_images: int, tables: tuple[str, ...] = REPORT_TABLES) -> dict[str, Any]:
    """Every picture of ``report`` decodes in Chromium, there are at least ``min_images``, and ``tables`` are there
    (skipped without Chromium unless it is required)."""
    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed (set FOURM_REQUIRE_CHROMIUM=1 to fail instead)")
    probe = browser_check(report, browser)
    assert probe["loaded"] == probe["images"], f"pictures that did not load: {probe['broken']}"
    assert probe["images"] >= min_images
    assert set(tables) <= set(probe["tables"]), f"missing tables: {set(tables) - set(probe['tables'])}"
    return probe


# ------------------------------------------------------------------------------------------------ a small output


def _png(path: Path, size: int = 16, seed: int = 0) -> str:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path.as_posix()


def _hand_made_demo_folder(out: Path) -> int:
    """A demo output folder with one record of every kind the report reads; returns how many pictures it shows."""
    from fourm_core.training.report import curves_svg

    (out / "timings.json").write_text(json.dumps({"plugins and conformance": 1.5, "generation and retrieval": 9.0}))
    checks = [{"modality": m, "check": c, "ok": True, "message": ""} for m in ("a", "b") for c in ("spec", "codec")]
    (out / "conformance.json").write_text(json.dumps(checks))
    report = {
        "name": "tok_a",
        "modalities": ["a"],
        "family": "vit_vqvae",
        "training": {"steps": 3, "seconds": 0.5},
        "evaluation": {
            "bound": {"psnr": 20.0},
            "baseline": {"psnr": 10.0},
            "usage": {"perplexity": 12.0, "codes_used": 0.5},
        },
    }
    (out / "tokenizers" / "tok_a").mkdir(parents=True)
    (out / "tokenizers" / "tok_a" / "report.json").write_text(json.dumps(report))
    run = out / "model"
    run.mkdir()
    records = [
        {"kind": "val", "step": s, "loss": 5.0 - s, "losses": {"k1": 5.0 - s, "k2": 4.0 - s / 2}} for s in range(3)
    ]
    (run / "log.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    curves_svg(records, run / "curves.svg")
    _png(run / "pixels2all.png", 40)
    summary = {"steps": 3, "validation_first": 5.0, "validation_last": 3.0, "probe_token_accuracy": {"k1": 0.5}}
    (run / "summary.json").write_text(json.dumps(summary))
    gen = out / "generation"
    hits = [
        {
            "index": i,
            "similarity": 0.9 - i / 10,
            "picture": _png(gen / "store" / f"{i}.png", seed=i)[len(str(out)) + 1 :],
            "text": f"scene {i}",
        }
        for i in range(3)
    ]
    record = {
        "scenes": [
            {
                "index": 7,
                "text": "a scene",
                "picture": "generation/store/0.png",
                "targets": [
                    {"key": "k1", "kind": "image_tokens", "picture": "generation/scene_7/k1.png"},
                    {"key": "g", "kind": "global_tokens", "cosine_prediction": 0.8, "cosine_reconstruction": 0.9},
                    {"key": "s", "kind": "sequence", "truth": "one <b>two</b>", "prediction": "one", "parsed": False},
                ],
            }
        ],
        "target_seconds": {"k1": 1.0, "g": 0.5, "s": 0.2},
        "chains": [
            {
                "scene": 7,
                "text": "a scene",
                "steps": [{"target": "g"}, {"target": "k1"}],
                "picture": "generation/chain_7.png",
                "nearest": hits[0],
            }
        ],
        "retrieval": {
            "key": "g",
            "size": 3,
            "queries": [
                {"by": "px", "scene": 0, "picture": "generation/store/0.png", "hits": hits},
                {"by": "txt", "scene": 0, "text": "a scene", "hits": hits},
            ],
        },
        "evaluation": {
            "one pass": {"k1": {"key": "k1", "n": 4, "model": {"miou": 0.2}, "bound": {"miou": 0.5}}},
            "ensemble of 4": {"k1": {"key": "k1", "n": 4, "model": {"miou": 0.25}, "bound": {"miou": 0.5}}},
        },
        "seconds": 9.0,
    }
    _png(gen / "scene_7" / "k1.png", 32)
    _png(gen / "chain_7.png", 32)
    (gen / "generation.json").write_text(json.dumps(record))
    # curves, probe, scene input, one target, chain, its nearest scene, 1 query picture, 2 x 3 hits
    return 1 + 1 + 1 + 1 + 1 + 1 + 1 + 6


def test_report_from_a_small_output_loads_in_chromium(tmp_path: Path) -> None:
    expected = _hand_made_demo_folder(tmp_path)
    path = write_report(tmp_path)
    assert path == tmp_path / REPORT_NAME
    text = path.read_text()
    assert "one &lt;b&gt;two&lt;/b&gt;" in text  # stored texts are escaped, not markup
    assert 'src="generation/' not in text  # every picture is inlined: the page is one file
    probe = assert_report_loads(path, expected, (*REPORT_TABLES, "generation-7-vectors", "generation-7-sequences"))
    assert probe["images"] == expected


def test_browser_check_sees_a_broken_picture(tmp_path: Path) -> None:
    expected = _hand_made_demo_folder(tmp_path)
    (tmp_path / "generation" / "chain_7.png").write_bytes(b"not a png")
    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed")
    probe = browser_check(write_report(tmp_path), browser)
    assert probe["images"] == expected and probe["loaded"] == expected - 1
    assert probe["broken"] == ["chain 7"]


def test_report_of_an_empty_folder_says_what_is_missing(tmp_path: Path) -> None:
    text = write_report(tmp_path).read_text()
    assert "No stage timings" in text and "No generations yet" in text and "<img" not in text


def test_report_tables_hold_the_evaluation_and_the_committed_benchmarks(tmp_path: Path) -> None:
    from fourm_core.apps.demo.report import BENCHMARK_RESULTS, render_report

    _hand_made_demo_folder(tmp_path)
    page = render_report(tmp_path)
    assert "<td>tokenizer bound</td>" in page and "<th>k1 miou</th>" in page and "<td>ensemble of 4</td>" in page
    if any(BENCHMARK_RESULTS.glob("*-quality.json")):  # a source checkout carries the committed results
        assert 'id="quality"' in page and 'id="performance"' in page and "<td>specialists</td>" in page
