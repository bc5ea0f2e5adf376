"""What ``generate`` (CLI and Python API) accepts as inputs and options: pictures read by the photo ingester, and
requests that used to give silent wrong results refused before any compute.

Pictures must be read exactly as ``fourm data ingest`` reads the photos a model is trained on: a phone photo stored
sideways with an EXIF orientation is turned upright, a text file named ``.jpg`` or a half-copied JPEG is refused by
name (not a Pillow traceback), and a header claiming a gigapixel image is refused before decoding. Options that
cannot be honoured (``ensemble=1000`` would hold 1000 chains in memory, ``steps=0``, ``targets="depth"`` read letter
by letter, a NaN depth map, a tokenizer folder that does not exist) are errors naming what is wrong.

The model is a random-init dim-32 network over rgb, depth and caption with a vocabulary of a few sentences: these
tests are about requests, not samples.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fourm_core.errors import UserError
from fourm_core.inference import sampler as sampler_module
from fourm_core.inference.api import FourM
from fourm_core.inference.pipeline import ModelAssetsError, Pipeline
from fourm_core.inference.requests import MAX_ENSEMBLE, GenerationRequestError, build_inputs
from fourm_core.keys import KeyTable
from fourm_core.model.network import FourMNetwork, fourm_config
from fourm_core.registry import Registry
from fourm_core.sources.image_folder import load_photo
from fourm_core.vocab import build_text_vocabulary

PRESET, SIZE = "tiny", 64
MODALITIES = ("rgb", "depth", "caption")
SENTENCES = ["a red car on a road.", "two dogs on the grass.", "a person near a blue cube."]


def photo() -> np.ndarray:
    """A real photo (scikit-image's astronaut) when scikit-image is installed, else a picture with no symmetry."""
    try:
        from skimage import data

        return np.ascontiguousarray(data.astronaut()[::4, ::4])  # 128 x 128
    except ImportError:  # pragma: no cover - scikit-image is a test dependency here
        y, x = np.mgrid[0:128, 0:128]
        return np.stack([x * 2, y * 2, (x * y) % 256], axis=-1).astype(np.uint8)


@pytest.fixture(scope="module")
def model(registry: Registry) -> FourM:
    words = sorted({w for m in registry.modalities() for w in m.spec.vocab_words})
    vocab = build_text_vocabulary(SENTENCES * 4, words)
    keys = {registry.get(name).model_key(PRESET) for name in MODALITIES}
    table = KeyTable.from_registry(registry, PRESET, text_vocab_size=vocab.size, keys=keys)
    torch.manual_seed(0)
    network = FourMNetwork(fourm_config(table, "tiny", dim=32, encoder_depth=1, decoder_depth=1, num_heads=2))
    return FourM(network, registry, PRESET, vocab)


@pytest.fixture
def no_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sampler must not run: every refusal here comes before any compute."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the sampler ran: the request was not checked first")

    monkeypatch.setattr(sampler_module.GenerationSampler, "generate", refuse)


def pixels(registry: Registry, value: object) -> np.ndarray:
    """The picture the model would see for an rgb input (network-less pipeline: only the reading is exercised)."""
    return build_inputs(Pipeline.create(None, registry, PRESET), {"rgb": value}).pictures["rgb"]


# ---------------------------------------------------------------------------------------------- pictures


def test_a_sideways_phone_photo_is_turned_upright_as_ingest_does(registry: Registry, tmp_path: Path) -> None:
    upright = photo()
    Image.fromarray(upright).save(tmp_path / "upright.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the pixels are stored turned left
    Image.fromarray(np.rot90(upright)).save(tmp_path / "phone.jpg", quality=95, exif=exif)

    seen = pixels(registry, tmp_path / "phone.jpg").astype(float)
    reference = pixels(registry, tmp_path / "upright.jpg").astype(float)
    assert np.abs(seen - reference).mean() < 6  # the same picture, up to JPEG noise
    assert np.abs(seen - np.rot90(reference)).mean() > 30  # and not the sideways one
    # exactly what the ingester stores for this file (the pixels a model trained on ingested photos saw)
    assert np.array_equal(pixels(registry, str(tmp_path / "phone.jpg")), load_photo(tmp_path / "phone.jpg", SIZE).rgb)


def _huge_png_header(path: Path, side: int = 40_000) -> None:
    """A PNG whose header claims side x side pixels, with almost no data: refused from the header, never decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("name", "make", "why"),
    [
        ("notes.jpg", lambda p: p.write_text("meeting notes, not a photo\n"), "not an image"),
        ("half.jpg", "truncated", "truncated"),
        ("empty.png", lambda p: p.write_bytes(b""), "empty file"),
        ("huge.png", _huge_png_header, "too large"),
    ],
)
def test_a_bad_picture_is_refused_naming_the_input_and_the_file(
    registry: Registry, tmp_path: Path, name: str, make: object, why: str
) -> None:
    path = tmp_path / name
    if make == "truncated":
        Image.fromarray(photo()).save(tmp_path / "whole.jpg", quality=95)
        whole = (tmp_path / "whole.jpg").read_bytes()
        path.write_bytes(whole[: len(whole) // 2])  # a copy interrupted half-way
    else:
        make(path)  # type: ignore[operator]
    with pytest.raises(GenerationRequestError, match=why) as caught:
        pixels(registry, str(path))
    assert str(caught.value).startswith("rgb: ") and name in str(caught.value)


def test_a_picture_is_not_read_as_a_token_modality(registry: Registry, tmp_path: Path) -> None:
    """A PNG of a depth map is not the (H, W) float array the depth tokenizer takes: reading it as RGB was wrong."""
    Image.fromarray(photo()).save(tmp_path / "depth.png")
    with pytest.raises(GenerationRequestError, match="^depth: .*not a pixel input"):
        build_inputs(Pipeline.create(None, registry, PRESET), {"depth": str(tmp_path / "depth.png")})


# ---------------------------------------------------------------------------------------------- values and options


def test_a_nan_input_array_is_refused_naming_the_input(model: FourM, no_compute: None) -> None:
    depth = np.full((SIZE, SIZE), 2.0, np.float32)
    depth[10:20, 10:20] = np.nan  # holes in a sensor's depth map
    with pytest.raises(GenerationRequestError, match=r"^depth: the array has 100 NaN or infinite values"):
        model.generate({"rgb": photo(), "depth": depth}, ["caption"])


def test_targets_given_as_one_string_is_that_target(model: FourM) -> None:
    """``targets="caption"`` was iterated letter by letter (``c: unknown modality``)."""
    out = model.generate({"rgb": photo()}, targets="caption", steps=1)
    assert list(out) == ["caption"] and out["caption"].text is not None


@pytest.mark.parametrize("targets", [7, ["caption", 7], None])
def test_targets_that_are_not_names_are_refused(model: FourM, no_compute: None, targets: object) -> None:
    with pytest.raises(GenerationRequestError, match="^targets: expected a list of modality names"):
        model.generate({"rgb": photo()}, targets=targets)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"ensemble": 1000}, f"between 1 and {MAX_ENSEMBLE}"),  # 1000 chains at once exhausted memory
        ({"ensemble": 0}, f"between 1 and {MAX_ENSEMBLE}"),
        ({"steps": 0}, "at least one decoding step"),  # ran with a silently substituted step count
        ({"temperature": -1.0}, "temperature -1.0"),
        ({"temperature": float("nan")}, "temperature nan"),
        ({"top_p": 0.0}, "top_p 0.0"),
        ({"top_p": 1.5}, "top_p 1.5"),
    ],
)
def test_options_that_cannot_be_honoured_are_refused_before_compute(
    model: FourM, no_compute: None, options: dict, why: str
) -> None:
    with pytest.raises(GenerationRequestError, match=why):
        model.generate({"rgb": photo()}, ["caption"], **options)


def test_a_tokenizer_folder_that_does_not_exist_is_refused(model: FourM, tmp_path: Path) -> None:
    """A typo in the folder read as "no trained tokenizers", and only for the targets that needed one."""
    with pytest.raises(ModelAssetsError, match="tokenizer folder .*nope does not exist") as caught:
        FourM(model.network, model.registry, PRESET, model.vocabulary, tmp_path / "nope")
    assert isinstance(caught.value, UserError)
