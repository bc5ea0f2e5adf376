"""ml-4m's per-modality tar shard layout both ways (``fourm data export-ml4m`` / ``import-ml4m``): a synthetic store
with rgb, caption, det and depth tokens round-trips to equal arrays, folders are aligned by key, and a damaged shard is
one error line naming the tar and the member."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from fourm_core.apps.cli.main import main
from fourm_core.registry import Registry
from fourm_core.spec import ArraySpec
from fourm_core.storage.ml4m_layout import Ml4mLayoutError, import_ml4m
from fourm_core.storage.store import AlignedStore

N, SIZE, BLOCK, CROPS, TOKENS = 10, 32, 4, 2, 16
PARTS = ("rgb/raw", "caption/raw", "det/raw", "depth/tokens", "crops")


def _add_tokens(path: Path) -> None:
    """Tokens and crops as ``fourm data tokenize`` stores them (its tokenizer training is too slow for this test)."""
    store = AlignedStore.open(path)
    arrays = [a for a in Registry().get("depth").spec.storage if a.form == "tokens"]
    store.ensure("depth/tokens", arrays, dims={"K": CROPS, "L": TOKENS}, provenance={"tokenizer": "test"})
    store.ensure("crops", [ArraySpec(name="settings", dtype="int32", shape=(CROPS, 5))])
    rng = np.random.default_rng(0)
    for block in range(store.n_blocks):
        rows = store.block_range(block)
        tokens = [{"tokens": rng.integers(0, 1024, (CROPS, TOKENS)).astype(np.int16)} for _ in rows]
        crops = [{"settings": rng.integers(0, SIZE, (CROPS, 5)).astype(np.int32)} for _ in rows]
        store.write_block("depth/tokens", block, tokens)
        store.write_block("crops", block, crops)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("ml4m")
    store, out = tmp / "store", tmp / "ml4m"
    synth = ["data", "synth", "--n", str(N), "--image-size", str(SIZE), "--block-size", str(BLOCK), "--out"]
    assert main([*synth, str(store)]) == 0
    assert main(["data", "label", str(store), "--only", "rgb", "caption", "det"]) == 0
    _add_tokens(store)
    assert main(["data", "export-ml4m", str(store), "--out", str(out), "--shard-size", "4"]) == 0
    return store, out


def _keys(tar: Path) -> list[str]:
    with tarfile.open(tar) as t:
        return [m.name.split(".")[0] for m in t.getmembers()]


def test_export_writes_ml4m_folders_with_aligned_keys(exported: tuple[Path, Path]) -> None:
    _, out = exported
    folders = sorted(p.name for p in out.iterdir())
    model_key = Registry().get("depth").model_key("tiny")
    assert folders == sorted(["rgb", "caption", "det", model_key, "crop_settings"])
    for folder in folders:
        shards = sorted((out / folder).glob("shard-*.tar"))
        assert [s.name for s in shards] == ["shard-00000.tar", "shard-00001.tar", "shard-00002.tar"]
        assert [_keys(s) for s in shards] == [_keys(out / "rgb" / s.name) for s in shards]
    with tarfile.open(out / model_key / "shard-00000.tar") as t:
        tokens = np.load(io.BytesIO(t.extractfile(t.getmembers()[0]).read()), allow_pickle=False)
    assert tokens.dtype == np.int16 and tokens.shape == (CROPS, TOKENS)  # ml-4m's (n_crops, H*W)


def test_round_trip_gives_equal_arrays(exported: tuple[Path, Path], tmp_path: Path) -> None:
    store, out = exported
    back = tmp_path / "back"
    imp = ["data", "import-ml4m", str(out), "--out", str(back), "--image-size", str(SIZE), "--block-size", str(BLOCK)]
    assert main(imp) == 0
    assert main(["data", "verify", str(back)]) == 0
    a, b = AlignedStore.open(store, "r"), AlignedStore.open(back, "r")
    assert b.n_samples == N and set(PARTS) <= set(b.parts())
    for part in PARTS:
        assert (b.state(part) == 1).all(), part
        for block in range(a.n_blocks):
            for x, y in zip(a.read_block(part, block), b.read_block(part, block), strict=True):
                for name, value in x.items():
                    if isinstance(value, np.ndarray):
                        np.testing.assert_array_equal(value, y[name], err_msg=f"{part}:{name}")
                    else:
                        assert value == y[name], (part, name)


def test_det_is_written_in_ml4m_form(exported: tuple[Path, Path]) -> None:
    """det goes out as ml-4m's ``{"instances": [{"boxes", "class_name", "score"}]}`` (the det plugin's file form),
    which is what ml-4m's DetectionTransform reads, and the boxes are the stored ones."""
    import json

    store, out = exported
    with tarfile.open(out / "det" / "shard-00000.tar") as t:
        member = t.getmembers()[0]
        data = json.loads(t.extractfile(member).read())
    index = int(member.name.split(".")[0])
    boxes = AlignedStore.open(store, "r").read("det/raw", index)["boxes"]
    assert data["num_instances"] == len(data["instances"]) == len(boxes) > 0
    for inst, box in zip(data["instances"], boxes, strict=True):
        assert inst["boxes"] == [box["xmin"], box["ymin"], box["xmax"], box["ymax"]]
        assert inst["class_name"] == box["label"] and inst["score"] == box["score"]
    ml4m_rows = [i["boxes"] + [i["class_name"], i["score"]] for i in data["instances"] if i["score"] >= 0.6]
    assert len(ml4m_rows) == len(boxes)  # ml-4m's convert_detection_instance keeps them all (scores are 1.0)


def test_a_det_file_not_in_ml4m_form_is_one_line(exported: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = exported
    root = _damaged_copy(out, tmp_path, "det", replace=("00000006.json", b'[{"xmin": 0.1}]'))
    with pytest.raises(Ml4mLayoutError) as err:
        import_ml4m(root, tmp_path / "s", "tiny", SIZE, BLOCK)
    message = str(err.value)
    assert "\n" not in message and "'00000006.json'" in message and '"instances"' in message


def _rewrite(src: Path, dst: Path, drop: str | None = None, replace: tuple[str, bytes] | None = None) -> None:
    """A copy of shard ``src`` without member ``drop``, or with ``replace``'s member holding other bytes."""
    with tarfile.open(src) as t, tarfile.open(dst, "w") as w:
        for m in t.getmembers():
            data = t.extractfile(m).read()
            if m.name == drop:
                continue
            if replace and m.name == replace[0]:
                data = replace[1]
            info = tarfile.TarInfo(m.name)
            info.size = len(data)
            w.addfile(info, io.BytesIO(data))


def _damaged_copy(out: Path, tmp: Path, folder: str, **change: object) -> Path:
    root = tmp / "damaged"
    for name in ("rgb", folder):
        (root / name).mkdir(parents=True, exist_ok=True)
        for shard in sorted((out / name).glob("*.tar")):
            if name == folder and shard.name == "shard-00001.tar":
                _rewrite(shard, root / name / shard.name, **change)
            else:
                (root / name / shard.name).write_bytes(shard.read_bytes())
    return root


def test_a_missing_key_names_the_tar_and_the_member(exported: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = exported
    root = _damaged_copy(out, tmp_path, "caption", drop="00000005.txt")
    with pytest.raises(Ml4mLayoutError) as err:
        import_ml4m(root, tmp_path / "s", "tiny", SIZE, BLOCK)
    message = str(err.value)
    assert "\n" not in message and "caption/shard-00001.tar" in message and "'00000005'" in message


def test_a_bad_member_names_the_tar_and_the_member(exported: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = exported
    root = _damaged_copy(out, tmp_path, "det", replace=("00000006.json", b"{not json"))
    with pytest.raises(Ml4mLayoutError) as err:
        import_ml4m(root, tmp_path / "s", "tiny", SIZE, BLOCK)
    message = str(err.value)
    assert "\n" not in message and "det/shard-00001.tar" in message and "'00000006.json'" in message


def test_a_bad_extension_and_a_pickle_are_refused(exported: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = exported
    root = _damaged_copy(out, tmp_path, "rgb", replace=("00000004.png", b"not an image"))
    with pytest.raises(Ml4mLayoutError, match=r"rgb/shard-00001.tar: member '00000004.png' does not decode"):
        import_ml4m(root, tmp_path / "s", "tiny", SIZE, BLOCK)
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    tokens = Registry().get("depth").model_key("tiny")
    root = _damaged_copy(out, tmp_path / "p", tokens, replace=("00000004.npy", buf.getvalue()))
    with pytest.raises(Ml4mLayoutError, match=r"00000004.npy' does not decode as .npy"):
        import_ml4m(root, tmp_path / "p" / "s", "tiny", SIZE, BLOCK)


def test_cli_errors_are_one_line(exported: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store, out = exported
    assert main(["data", "export-ml4m", str(store), "--out", str(out)]) == 2  # folders already written
    assert main(["data", "export-ml4m", str(store), "--out", str(tmp_path / "x"), "--only", "nope"]) == 2
    assert main(["data", "import-ml4m", str(tmp_path / "none"), "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "already holds files" in err and "--only: nope" in err and "not a folder" in err


def test_text_given_as_ml4m_json_is_read_as_its_string() -> None:
    from fourm_core.storage.ml4m_layout import Folder, _decode

    text = Folder("folder", "m", "m/raw", "text", "txt")
    assert _decode(b'[{"caption": "a dog"}, {"caption": "a cat"}]', "json", text) == "a dog"
    assert _decode(b'"a dog"', "json", text) == "a dog"
    with pytest.raises(ValueError, match="expected a string"):
        _decode(b"[1, 2]", "json", text)
