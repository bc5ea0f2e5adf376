"""The ``fourm`` command line, run in-process (and once as a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fourm_core.apps.cli.main import main
from fourm_core.testing.plugin import ML4M_TOKENIZER
from fourm_core.vocab import TextVocabulary, VocabularyManifest
from helpers import EXAMPLE_PLUGIN, OFFICIAL_KEYS

BROKEN = "raise ImportError('needs libthermal.so')"


@pytest.fixture(autouse=True)
def builtins_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", EXAMPLE_PLUGIN)
    monkeypatch.delenv("FOURM_STRICT_PLUGINS", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_modalities_json_lists_21_plugins_behind_19_keys(capsys) -> None:
    code, out = run(capsys, "modalities", "--json")
    records = json.loads(out)
    assert code == 0 and len(records) == 21
    assert all({"name", "model_key", "id", "kind", "input_only"} <= set(r) for r in records)
    assert {r["model_key"]: r["id"] for r in records} == OFFICIAL_KEYS
    targets = {r["model_key"] for r in records if not r["input_only"]}
    assert len(targets) == 17 and "rgb@224" not in targets and "t5_caption" not in targets


def test_modalities_table_filters_by_pattern_and_preset(capsys) -> None:
    code, out = run(capsys, "modalities", "--preset", "tiny", "edge")
    assert code == 0
    assert "tok_canny_edge@64" in out and "tok_sam_edge@64" in out and "tok_depth" not in out
    assert "[edge]" in out  # the shared edge tokenizer is visible


def test_plugins_json_shows_versions_hooks_and_a_broken_plugin(capsys, make_dist) -> None:
    make_dist("fourm-thermal", "thermal", BROKEN, version="0.2.0")
    code, out = run(capsys, "plugins", "--json")
    data = json.loads(out)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert code == 0
    assert by_name["det"]["distribution"] == "fourm-det" and by_name["det"]["version"] == "0.1.0"
    assert by_name["det"]["hooks"] == ["fourm_register_modalities"]  # one declaration: spec, labeler, codec, decoder
    assert by_name["builtin_sources"]["hooks"] == ["fourm_register_sources"]
    assert by_name[EXAMPLE_PLUGIN]["blocked"] is True
    assert "libthermal.so" in by_name["thermal"]["errors"][0]
    assert any("fourm-thermal 0.2.0" in p["message"] for p in data["problems"])


def test_the_rest_keeps_working_next_to_a_broken_plugin(capsys, make_dist) -> None:
    make_dist("fourm-thermal", "thermal", BROKEN)
    code, out = run(capsys, "modalities", "--json")
    assert code == 0 and len(json.loads(out)) == 21


def test_validate_one_plugin_passes_and_unknown_fails(capsys) -> None:
    code, out = run(capsys, "validate", "fourm-human-poses")
    assert code == 0 and "human_poses" in out and "FAIL" not in out
    assert main(["validate", "sonar"]) == 2  # a user mistake: one line on stderr
    assert "no loaded modality" in capsys.readouterr().err


def test_validate_reports_a_failing_plugin(capsys, make_dist) -> None:
    make_dist(
        "fourm-heavy",
        "heavy",
        """
        import json  # stands in for a heavy import
        import torch

        @hookimpl
        def fourm_register_modalities(register):
            register(image_spec("heavy"))
    """,
    )
    code, out = run(capsys, "validate", "heavy")
    assert code == 1 and "heavy/lazy_import" in out and "torch" in out


def test_vocab_build_writes_tokenizer_and_manifests(capsys, tmp_path: Path) -> None:
    corpus = tmp_path / "captions.txt"
    corpus.write_text("a red cube left of a person on a road\ntwo dogs in a park near a bench\n")
    code, out = run(capsys, "vocab", "build", "--corpus", str(corpus), "--out", str(tmp_path / "v"))
    assert code == 0 and "trained WordPiece on 2 documents" in out
    text = TextVocabulary.load(tmp_path / "v" / "text_tokenizer.json")
    manifest = VocabularyManifest.load(tmp_path / "v" / "manifest.tiny.json")
    assert manifest.text_vocabulary["sha256"] == text.fingerprint
    assert manifest.modalities["caption"].vocab_size == text.size
    assert manifest.modalities["tok_rgb@64"].vocab_size == 1024


def test_vocab_build_can_adopt_the_official_file(capsys, tmp_path: Path, fourm_ml4m_data: Path) -> None:
    official = fourm_ml4m_data / ML4M_TOKENIZER
    if not official.is_file():
        pytest.skip(f"official tokenizer not at {official}")
    code, out = run(capsys, "vocab", "build", "--official", str(official), "--out", str(tmp_path))
    manifest = VocabularyManifest.load(tmp_path / "manifest.paper.json")
    assert code == 0 and manifest.modalities["det"].vocab_size == 30000
    assert manifest.text_vocabulary["source"] == str(official)


def test_the_console_script_runs_without_importing_torch(tmp_path: Path) -> None:
    code = (
        "import sys; from fourm_core.apps.cli.main import main; rc = main(['modalities', '--json']); "
        "print('TORCH' if 'torch' in sys.modules else 'LIGHT', file=sys.stderr); sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().endswith("LIGHT")
    assert len(json.loads(out.stdout)) == 21


def test_fourm_executable_is_installed() -> None:
    exe = Path(sys.executable).with_name("fourm")
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("fourm ")
