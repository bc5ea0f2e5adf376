"""The shared text vocabulary (official layout, official file) and the vocabulary manifest."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from fourm_core.registry import Registry
from fourm_core.spec import PRESETS
from fourm_core.testing.checks import example_corpus
from fourm_core.vocab import TextVocabulary, VocabularyManifest, build_manifest, build_text_vocabulary, read_corpus
from helpers import EXAMPLE_PLUGIN


@pytest.fixture(scope="module")
def built(request) -> TextVocabulary:
    reg = Registry(disabled={EXAMPLE_PLUGIN}, strict=False)
    words = [w for m in reg.modalities() for w in m.spec.vocab_words]
    return build_text_vocabulary(example_corpus(reg, per_modality=100), words)


def _layout(text: TextVocabulary) -> dict[str, int | None]:
    return {
        t: text.token_to_id(t)
        for t in (
            "[PAD]",
            "[UNK]",
            "[SOS]",
            "[EOS]",
            "[S_0]",
            "[S_1]",
            "[S_199]",
            "v0=0",
            "v0=999",
            "v1=0",
            "v2=0",
            "v3=999",
        )
    }


EXPECTED_LAYOUT = {
    "[PAD]": 0,
    "[UNK]": 1,
    "[SOS]": 2,
    "[EOS]": 3,
    "[S_0]": 4,
    "[S_1]": 5,
    "[S_199]": 203,
    "v0=0": 204,
    "v0=999": 1203,
    "v1=0": 1204,
    "v2=0": 2204,
    "v3=999": 4203,
}


def test_built_vocabulary_has_the_official_reserved_layout(built: TextVocabulary) -> None:
    assert _layout(built) == EXPECTED_LAYOUT
    assert (built.pad_id, built.eos_id, built.sentinel_ids[1]) == (0, 3, 5)


def test_plugin_words_follow_the_value_tokens_sorted(built: TextVocabulary) -> None:
    assert built.token_to_id("airplane") == 4204  # first COCO class alphabetically, as in the official file
    assert built.tokens("v0=12 v1=40 v2=300 v3=511 teddy bear") == ["v0=12", "v1=40", "v2=300", "v3=511", "teddy bear"]
    for word in ("human", "pose", "polygon", "point", "none", "sports ball"):
        assert len(built.encode(word)) == 1, word


def test_official_file_has_the_same_layout(ml4m_vocabulary: TextVocabulary) -> None:
    assert _layout(ml4m_vocabulary) == EXPECTED_LAYOUT
    assert ml4m_vocabulary.size == 30000
    assert ml4m_vocabulary.token_to_id("person") == 4253 and ml4m_vocabulary.token_to_id("teddy bear") == 4270


@pytest.mark.parametrize("vocab_size", [30000, 4300])
def test_training_is_deterministic_below_and_at_the_cap(vocab_size: int) -> None:
    rng = random.Random(0)
    words = "a red cube left of person road two blue sphere near dog park chair table green behind photo".split()
    corpus = [" ".join(rng.choice(words) + rng.choice(["", "s", "ing"]) for _ in range(10)) for _ in range(2000)]
    runs = {build_text_vocabulary(corpus, ["person", "dog"], vocab_size).fingerprint for _ in range(3)}
    runs.add(build_text_vocabulary(corpus, ["dog", "person"], vocab_size).fingerprint)
    assert len(runs) == 1


def test_decode_keeps_value_tokens_and_class_names(built: TextVocabulary) -> None:
    text = "v0=1 v1=2 v2=3 v3=4 dining table [S_2]"
    assert built.decode(built.encode(text)) == text


def test_save_and_load_round_trip(built: TextVocabulary, tmp_path: Path) -> None:
    again = TextVocabulary.load(built.save(tmp_path / "t.json"))
    assert again.fingerprint == built.fingerprint and again.size == built.size
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TextVocabulary.load(tmp_path / "missing.json")


def test_vocab_size_below_the_reserved_tokens_is_refused() -> None:
    with pytest.raises(ValueError, match="smaller than the 4204 reserved tokens"):
        build_text_vocabulary(["a"], vocab_size=100)


def test_read_corpus_reads_lines_and_dash_separated_documents(tmp_path: Path) -> None:
    (tmp_path / "lines.txt").write_text("a dog on grass\n\nthree cups\n")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "multi.txt").write_text("first line\nsecond line\n--\nother doc\n")
    assert list(read_corpus([tmp_path / "lines.txt", folder])) == [
        "a dog on grass",
        "three cups",
        "first line\nsecond line",
        "other doc",
    ]


def test_manifest_records_every_model_key(built: TextVocabulary) -> None:
    reg = Registry(disabled={EXAMPLE_PLUGIN}, strict=False)
    manifest = build_manifest(reg, "paper", built)
    assert len(manifest.modalities) == 19
    caption, depth, meta = (manifest.modalities[k] for k in ("caption", "tok_depth@224", "metadata"))
    assert (
        caption.vocab_size == built.size and caption.max_tokens == 256 and caption.providers == ["fourm-caption 0.1.0"]
    )
    assert depth.vocab_size == 8192 and depth.id == 20063
    assert meta.members == ["metadata_geometric", "metadata_image", "metadata_semantic"]
    assert manifest.text_vocabulary["sha256"] == built.fingerprint


def test_adding_or_blocking_a_plugin_never_changes_other_entries(built: TextVocabulary, tmp_path: Path) -> None:
    with_example = Registry(disabled=set(), strict=False)
    without = Registry(disabled={EXAMPLE_PLUGIN}, strict=False)
    for preset in PRESETS:
        a = build_manifest(with_example, preset, built)
        b = build_manifest(without, preset, built)
        example_key = with_example.get(EXAMPLE_PLUGIN).model_key(preset)
        assert set(a.modalities) - set(b.modalities) == {example_key}
        assert {k: v for k, v in a.modalities.items() if k != example_key} == b.modalities
        assert b.diff(a) == [f"{example_key}: only in the other (provided by fourm-albedo 0.1.0)"]
        saved = VocabularyManifest.load(b.save(tmp_path / f"{preset}.json"))
        assert saved == b and saved.diff(b) == []


def test_manifest_diff_names_what_differs(built: TextVocabulary) -> None:
    reg = Registry(disabled={EXAMPLE_PLUGIN}, strict=False)
    a = build_manifest(reg, "tiny", built)
    b = build_manifest(reg, "tiny", build_text_vocabulary(["something else entirely"]))
    changed = a.model_copy(
        update={
            "modalities": {
                **a.modalities,
                "tok_depth@64": a.modalities["tok_depth@64"].model_copy(update={"vocab_size": 1024}),
            }
        }
    )
    assert a.diff(b) == ["text vocabulary differs (built in this manifest vs built in the other)"] + [
        f"{k}: vocab_size {a.modalities[k].vocab_size} in this manifest != {b.modalities[k].vocab_size} in the other"
        for k in sorted(a.modalities)
        if a.modalities[k].vocabulary == "text"
    ]
    assert changed.diff(a, here="the store", there="the plugins") == [
        "tok_depth@64: vocab_size 1024 in the store != 512 in the plugins"
    ]


def test_every_serializer_speaks_the_official_vocabulary(ml4m_vocabulary: TextVocabulary) -> None:
    reg = Registry(disabled={EXAMPLE_PLUGIN}, strict=False)
    for modality in reg.modalities():
        if reg.serializer_spec(modality.name) is None:
            continue
        ser = modality.serializer()
        for seed in range(20):
            text = ser.serialize(ser.example(random.Random(seed)), random.Random(seed))
            ids = ml4m_vocabulary.encode(text)
            assert ml4m_vocabulary.unk_id not in ids, (modality.name, text, ml4m_vocabulary.tokens(text))
            for token, ident in zip(ml4m_vocabulary.tokens(text), ids):
                if token.startswith("v") and "=" in token and token[1].isdigit():
                    slot, value = int(token[1]), int(token.split("=")[1])
                    assert ident == 204 + 1000 * slot + value
