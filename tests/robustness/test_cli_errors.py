"""Every ``fourm`` subcommand ends a user mistake the same way: exit code 2, no traceback, one line on stderr that
names the bad file, argument or name (``fourm_core.apps.cli.errors``).

The corpus below is what a new user types: paths that do not exist, a folder or file that is not a store, corrupt
JSON and YAML, a truncated safetensors model, weights of another model, a text file named ``.png``, zeros and words
where counts go, and typos in names. Before the top-level handler these ended in raw tracebacks
(``StoreError``, ``SafetensorError``, ``UnidentifiedImageError``, pydantic's many-line reports), in silent success
(``--image-size 0``, ``--steps 0``, ``tokenize --only dpeth``, a ``--tokenizers`` typo) or in a message on stdout.

The commands run in-process (``main([...])``, a tenth of a second each); one case runs as a real subprocess to
check the interpreter's exit status. ``--debug`` / ``FOURM_DEBUG=1`` show the traceback, and a programming error
still shows one, with exit code 1 and a request to report it.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from robustness.conftest import RunCli, assert_user_error

from fourm_core.apps.cli import main as cli_main
from fourm_core.apps.cli.errors import user_error_message
from fourm_core.inference.retrieval import sidecar_path
from fourm_core.keys import KeyTable
from fourm_core.model.network import FourMNetwork, fourm_config
from fourm_core.registry import Registry
from fourm_core.vocab import TextVocabulary, build_text_vocabulary
from helpers import EXAMPLE_PLUGIN

MISSING = "no-such-thing"


@pytest.fixture(autouse=True)
def as_a_user_runs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment of ``cli_env``: installed plugins but the example one, strict, no debug."""
    monkeypatch.setenv("FOURM_DISABLE_PLUGINS", EXAMPLE_PLUGIN)
    monkeypatch.setenv("FOURM_STRICT_PLUGINS", "1")
    monkeypatch.delenv("FOURM_DEBUG", raising=False)


def _model(registry: Registry, vocab: TextVocabulary, folder: Path, dim: int) -> Path:
    keys = {registry.get(name).model_key("tiny") for name in ("rgb", "depth", "caption", "det")}
    table = KeyTable.from_registry(registry, "tiny", text_vocab_size=vocab.size, keys=keys)
    torch.manual_seed(0)
    FourMNetwork(fourm_config(table, "tiny", dim=dim, encoder_depth=1, decoder_depth=1, num_heads=2)).save_pretrained(
        folder
    )
    return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> dict[str, Path]:
    """Good and bad things to point commands at: a model, a vocabulary, a store, and their damaged twins."""
    root = tmp_path_factory.mktemp("cli-errors")
    words = sorted({w for m in registry.modalities() for w in m.spec.vocab_words})
    vocab = build_text_vocabulary(["a red car on a road.", "two dogs on the grass."] * 4, words)
    vocab.save(root / "vocab.json")
    model = _model(registry, vocab, root / "model", 32)
    for name, config, weights in (("bad-weights", True, False), ("bad-config", False, True)):
        (root / name).mkdir()
        if config:
            shutil.copy(model / "config.json", root / name / "config.json")
            (root / name / "model.safetensors").write_bytes(b"\x10\x00\x00\x00junk")  # truncated / overwritten
        if weights:
            (root / name / "config.json").write_text('{"dim": 32,')
            shutil.copy(model / "model.safetensors", root / name / "model.safetensors")
    other = _model(registry, vocab, root / "other", 48)  # weights of a wider model beside this config
    (root / "mismatched").mkdir()
    shutil.copy(model / "config.json", root / "mismatched" / "config.json")
    shutil.copy(other / "model.safetensors", root / "mismatched" / "model.safetensors")
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(root / "photo.jpg", quality=95)
    whole = (root / "photo.jpg").read_bytes()
    (root / "trunc.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "notimg.png").write_text("not a picture\n")
    (root / "corrupt.json").write_text('{"caption": ')
    (root / "broken.yaml").write_text("schedule: [steps: 3\n")
    (root / "notes.txt").write_text("a file, not a store\n")
    (root / "ix.usearch").write_bytes(b"junk")
    sidecar_path(root / "ix.usearch").write_text('{"modality": ')
    (root / "not-a-store").mkdir()
    (root / "empty-toks").mkdir()
    (root / "reports" / "depth").mkdir(parents=True)
    (root / "reports" / "depth" / "report.json").write_text("{")
    depth = np.ones((64, 64), np.float32)
    depth[0, 0] = np.nan
    np.save(root / "nan.npy", depth)
    store = root / "store.zarr"
    assert cli_main.main(["data", "synth", "--n", "4", "--block-size", "4", "--out", str(store)]) == 0
    return {"root": root, "store": store, "model": model, "vocab": root / "vocab.json"}


def generate(
    f: dict[str, Path], *extra: str, model: str = "model", target: str = "caption", vocab: str = "vocab.json"
) -> list[str]:
    """``fourm generate`` of a caption from the good photo with the good model, changed by the arguments."""
    root = f["root"]
    head = ["generate", "--model", str(root / model), "--vocab", str(root / vocab), "--out", str(root / "out")]
    return [*head, "--input", f"rgb={root / 'photo.jpg'}", "--targets", target, "--steps", "1", *extra]


#: (case id, argv from the files, words the error line must contain: the bad thing, by name)
CASES = [
    # -- data
    ("data-verify-missing", lambda f: ["data", "verify", str(f["root"] / MISSING)], [MISSING]),
    ("data-info-missing", lambda f: ["data", "info", str(f["root"] / MISSING)], [MISSING]),
    ("data-label-missing", lambda f: ["data", "label", str(f["root"] / MISSING)], [MISSING]),
    ("data-verify-a-folder", lambda f: ["data", "verify", str(f["root"] / "not-a-store")], ["not-a-store"]),
    ("data-info-a-file", lambda f: ["data", "info", str(f["root"] / "notes.txt")], ["notes.txt"]),
    ("data-synth-n-0", lambda f: ["data", "synth", "--n", "0", "--out", str(f["root"] / "s")], ["--n", "0"]),
    ("data-synth-n-word", lambda f: ["data", "synth", "--n", "four", "--out", str(f["root"] / "s")], ["--n", "four"]),
    (
        "data-synth-image-size-0",  # silently fell back to the default size
        lambda f: ["data", "synth", "--n", "4", "--image-size", "0", "--out", str(f["root"] / "s")],
        ["--image-size"],
    ),
    (
        "data-synth-block-size-negative",
        lambda f: ["data", "synth", "--n", "4", "--block-size", "-3", "--out", str(f["root"] / "s")],
        ["--block-size", "-3"],
    ),
    (
        "data-ingest-missing-folder",
        lambda f: ["data", "ingest", str(f["root"] / MISSING), "--out", str(f["root"] / "s")],
        [MISSING],
    ),
    (
        "data-tokenize-missing-tokenizers",  # every modality was "not trained", exit 0
        lambda f: ["data", "tokenize", str(f["store"]), "--tokenizers", str(f["root"] / MISSING)],
        ["--tokenizers", MISSING],
    ),
    (
        "data-tokenize-only-typo",  # selected nothing, exit 0
        lambda f: ["data", "tokenize", str(f["store"]), "--tokenizers", str(f["root"]), "--only", "dpeth"],
        ["dpeth", "depth"],
    ),
    ("data-label-labeler-no-value", lambda f: ["data", "label", str(f["store"]), "--labeler", "depth"], ["--labeler"]),
    ("data-label-only-typo", lambda f: ["data", "label", str(f["store"]), "--only", "captoin"], ["captoin", "caption"]),
    # -- tokenizer
    ("tokenizer-train-no-name", lambda f: ["tokenizer", "train", "--store", str(f["store"])], ["--all"]),
    ("tokenizer-train-typo", lambda f: ["tokenizer", "train", "dpeth", "--store", str(f["store"])], ["dpeth"]),
    (
        "tokenizer-train-steps-0",
        lambda f: ["tokenizer", "train", "depth", "--store", str(f["store"]), "--steps", "0"],
        ["--steps"],
    ),
    ("tokenizer-train-missing-store", lambda f: ["tokenizer", "train", "depth", "--store", MISSING], [MISSING]),
    (
        "tokenizer-eval-missing-folder",
        lambda f: ["tokenizer", "eval", "depth", "--store", str(f["store"]), "--tokenizers", MISSING],
        [MISSING],
    ),
    (
        "tokenizer-list-corrupt-report",
        lambda f: ["tokenizer", "list", "--tokenizers", str(f["root"] / "reports")],
        ["report.json"],
    ),
    # -- train
    ("train-missing-config", lambda f: ["train", "--config", str(f["root"] / "run.yaml")], ["run.yaml"]),
    ("train-broken-yaml", lambda f: ["train", "--config", str(f["root"] / "broken.yaml")], ["broken.yaml"]),
    (
        "train-set-without-value",
        lambda f: ["train", "--config", str(f["root"] / "broken.yaml"), "--set", "schedule.steps"],
        ["--set", "schedule.steps"],
    ),
    ("train-nproc-0", lambda f: ["train", "--config", "c.yaml", "--nproc", "0"], ["--nproc"]),
    # -- generate
    ("generate-missing-model", lambda f: generate(f, model=MISSING), [MISSING]),
    ("generate-corrupt-config", lambda f: generate(f, model="bad-config"), ["bad-config/config.json"]),
    ("generate-corrupt-weights", lambda f: generate(f, model="bad-weights"), ["bad-weights/model.safetensors"]),
    ("generate-weights-of-another-model", lambda f: generate(f, model="mismatched"), ["mismatched", "do not fit"]),
    ("generate-not-an-image", lambda f: _swap(f, "notimg.png"), ["rgb", "notimg.png", "not an image"]),
    ("generate-truncated-jpeg", lambda f: _swap(f, "trunc.jpg"), ["rgb", "trunc.jpg", "truncated"]),
    ("generate-nan-array", lambda f: generate(f, "--input", f"depth={f['root'] / 'nan.npy'}"), ["depth", "NaN"]),
    ("generate-steps-0", lambda f: generate(f, "--steps", "0"), ["--steps"]),
    ("generate-ensemble-1000", lambda f: generate(f, "--ensemble", "1000"), ["ensemble 1000"]),
    ("generate-missing-tokenizers", lambda f: generate(f, "--tokenizers", MISSING), ["--tokenizers", MISSING]),
    ("generate-corrupt-vocab", lambda f: generate(f, vocab="corrupt.json"), ["corrupt.json"]),
    (
        "generate-corrupt-json-input",
        lambda f: generate(f, "--input", f"det={f['root'] / 'corrupt.json'}"),
        ["corrupt.json"],
    ),
    ("generate-input-without-value", lambda f: generate(f, "--input", "caption"), ["--input", "caption"]),
    ("generate-broken-schedule", lambda f: generate(f, "--schedule", str(f["root"] / "broken.yaml")), ["broken.yaml"]),
    ("generate-target-typo", lambda f: generate(f, target="dpeth"), ["dpeth", "depth"]),
    # -- retrieve
    (
        "retrieve-build-missing-store",
        lambda f: ["retrieve", "build", "--store", MISSING, "--modality", "dinov2_global", "--out", "i.usearch"],
        [MISSING],
    ),
    ("retrieve-query-missing-index", lambda f: query(f, MISSING, "--text", "caption=a dog"), [MISSING]),
    (
        "retrieve-query-corrupt-sidecar",
        lambda f: query(f, str(f["root"] / "ix.usearch"), "--text", "caption=a dog"),
        [sidecar_path(Path("ix.usearch")).name],
    ),
    ("retrieve-query-k-0", lambda f: query(f, "i.usearch", "--k", "0"), ["--k"]),
    # -- bench, vocab, validate
    ("bench-missing-config", lambda f: ["bench", "quality", "--config", str(f["root"] / "b.yaml")], ["b.yaml"]),
    ("bench-broken-yaml", lambda f: ["bench", "quality", "--config", str(f["root"] / "broken.yaml")], ["broken.yaml"]),
    (
        "vocab-official-missing",
        lambda f: ["vocab", "build", "--official", MISSING, "--out", str(f["root"] / "v")],
        [MISSING],
    ),
    (
        "vocab-official-corrupt",
        lambda f: ["vocab", "build", "--official", str(f["root"] / "corrupt.json"), "--out", str(f["root"] / "v")],
        ["corrupt.json"],
    ),
    (
        "vocab-corpus-missing",
        lambda f: ["vocab", "build", "--corpus", MISSING, "--out", str(f["root"] / "v")],
        [MISSING],
    ),
    ("validate-unknown-plugin", lambda f: ["validate", "sonar"], ["sonar"]),
]


def query(f: dict[str, Path], index: str, *extra: str) -> list[str]:
    """``fourm retrieve query`` with the good model and vocabulary and the given index."""
    head = ["retrieve", "query", "--model", str(f["model"]), "--vocab", str(f["vocab"])]
    return [*head, "--index", index, "--tokenizers", str(f["root"]), *extra]


def _swap(f: dict[str, Path], picture: str) -> list[str]:
    """``generate`` with another file as the rgb input."""
    argv = generate(f)
    argv[argv.index("--input") + 1] = f"rgb={f['root'] / picture}"
    return argv


def run_in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> subprocess.CompletedProcess[str]:
    """``fourm *argv`` in this process (argparse exits raise SystemExit, as in the console script)."""
    try:
        code = cli_main.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["fourm", *argv], code, out.out, out.err)


@pytest.mark.parametrize(("argv", "words"), [pytest.param(a, w, id=i) for i, a, w in CASES])
def test_a_user_mistake_is_one_line_exit_2_naming_it(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], argv: object, words: list[str]
) -> None:
    capsys.readouterr()
    assert_user_error(run_in_process(argv(files), capsys), *words)  # type: ignore[operator]


def test_every_subcommand_has_a_case() -> None:
    parser = cli_main.build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    covered = {i.split("-")[0] for i, _, _ in CASES}
    assert commands - {"plugins", "modalities", "demo"} <= covered, sorted(commands - covered)


def test_a_broken_plugin_in_strict_mode_is_one_line(make_dist, capsys: pytest.CaptureFixture[str]) -> None:
    """``FOURM_STRICT_PLUGINS=1`` turns plugin problems into an error: a line naming the plugin, not a traceback."""
    make_dist("fourm-thermal", "thermal", "raise ImportError('needs libthermal.so')")
    assert_user_error(run_in_process(["modalities"], capsys), "thermal", "libthermal.so")


def test_a_full_disk_is_one_line(files: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    (files["root"] / "corpus.txt").write_text("a red car on a road.\n")

    def full(self: object, path: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(TextVocabulary, "save", full)
    argv = ["vocab", "build", "--corpus", str(files["root"] / "corpus.txt"), "--out", str(files["root"] / "v")]
    assert_user_error(run_in_process(argv, capsys), "text_tokenizer.json", "no space left")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_torch_writing_to_a_full_disk_says_so() -> None:
    """torch's zip writer says "unexpected pos 704 vs 598" when the disk fills up; the line must say what happened."""
    with pytest.raises(RuntimeError) as caught:
        torch.save({"w": torch.zeros(10_000)}, "/dev/full")
    message = user_error_message(caught.value)
    assert message is not None and "full disk" in message


def test_debug_shows_the_traceback(files: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    argv = ["tokenizer", "train", "depth", "--store", str(files["root"] / MISSING)]
    for flags, env in ((["--debug"], None), ([], "1")):
        if env:
            monkeypatch.setenv("FOURM_DEBUG", env)
        result = run_in_process([*flags, *argv], capsys)
        assert result.returncode == 2 and "Traceback" in result.stderr
        assert result.stderr.rstrip().splitlines()[-1].startswith("error: ") and MISSING in result.stderr


def test_a_programming_error_keeps_its_traceback_and_asks_for_a_report(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(args: object) -> int:
        return len(None)  # type: ignore[arg-type]

    monkeypatch.setattr(cli_main, "cmd_plugins", broken)
    result = run_in_process(["plugins"], capsys)
    assert result.returncode == 1 and "Traceback" in result.stderr and "TypeError" in result.stderr
    assert "please report it" in result.stderr.splitlines()[-1]


def test_a_value_error_inside_a_library_is_a_bug_not_a_user_error() -> None:
    """A ValueError raised by numpy is not a deliberate message to the user: it must keep its traceback."""
    with pytest.raises(ValueError) as caught:
        np.zeros(3).reshape(2, 2)
    assert user_error_message(caught.value) is None


def test_the_console_script_exits_2(files: dict[str, Path], run_cli: RunCli) -> None:
    """The same as a real process: the interpreter's exit status and everything on stderr."""
    assert_user_error(run_cli(["data", "info", str(files["root"] / MISSING)]), MISSING)
