"""The typed key table and the network config: built from the registry, JSON and save/load round trips without loss,
typos as errors naming the field, and the official ml-4m config.json (no key table) at the boundary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from fourm_core.keys import KeyInfo, KeyTable, KeyTableError, modality_id
from fourm_core.model import FourMConfig, FourMNetwork, fourm_config, read_config
from fourm_core.registry import Registry
from fourm_core.spec import MaskingUnit, ModalityKind, Vocabulary

SMALL = {"dim": 32, "encoder_depth": 1, "decoder_depth": 1, "num_heads": 2}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry()


@pytest.fixture(scope="module")
def tiny(registry: Registry) -> KeyTable:
    return KeyTable.from_registry(registry, "tiny", text_vocab_size=1000)


# ---------------------------------------------------------------------------------------------- the key table


@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_table_has_every_model_key_with_its_spec_facts(registry: Registry, preset: str) -> None:
    table = KeyTable.from_registry(registry, preset, text_vocab_size=1000)
    model_keys = registry.model_keys(preset)
    assert list(table) == list(model_keys)
    for key, members in model_keys.items():
        info, spec = table[key], members[0].spec
        layout = spec.layout(preset)
        assert info.key == key and info.kind == spec.kind and info.masking == spec.masking
        assert info.members == tuple(m.name for m in members)
        assert info.id == modality_id(key) and 0 <= info.id < 2**15
        assert info.max_tokens == layout.max_tokens
        assert (info.image_size, info.patch_size) == (layout.image_size, layout.patch_size)
        assert info.input == any(not m.spec.target_only for m in members)
        assert info.target == any(m.spec.is_target for m in members)
        expected_vocab = {Vocabulary.OWN: layout.vocab_size, Vocabulary.TEXT: 1000, Vocabulary.NONE: None}
        assert info.vocab_size == expected_vocab[spec.vocabulary]
    assert len({info.id for info in table.values()}) == len(table)  # ids tell keys apart in mod_mask tensors


def test_group_members_share_one_key(registry: Registry, tiny: KeyTable) -> None:
    groups = {k: v for k, v in registry.model_keys("tiny").items() if len(v) > 1}
    assert groups, "the installed plugins have no group (metadata) to check"
    for key, members in groups.items():
        assert tiny[key].members == tuple(m.name for m in members)
        assert tiny[key].masking == MaskingUnit.CHUNK
    assert tiny.by_id(tiny[next(iter(groups))].id).key == next(iter(groups))


def test_kind_properties_replace_string_compares(tiny: KeyTable) -> None:
    for info in tiny.values():
        assert info.is_sequence == (info.kind in (ModalityKind.SEQUENCE, ModalityKind.SEQUENCE_EMBEDDING))
        assert info.is_grid == (info.kind in (ModalityKind.PIXELS, ModalityKind.IMAGE_TOKENS))
        assert info.is_pixels == (not info.target and info.is_grid)
        if info.is_grid:
            assert info.grid is not None and info.grid**2 == info.max_tokens
    assert tiny.inputs() == [k for k, v in tiny.items() if v.input]
    assert tiny.targets() == [k for k, v in tiny.items() if v.target]


def test_json_round_trip_and_errors(tiny: KeyTable) -> None:
    text = json.dumps(tiny.to_json())
    again = KeyTable.from_json(json.loads(text))
    assert again == tiny and list(again) == list(tiny)
    broken = json.loads(text)
    broken[0]["max_tokenz"] = 3
    with pytest.raises(ValidationError, match="max_tokenz"):
        KeyTable.from_json(broken)
    with pytest.raises(KeyTableError, match="twice"):
        KeyTable([tiny["caption"], tiny["caption"]])
    with pytest.raises(KeyError, match="no model key 'nope'"):
        tiny["nope"]
    with pytest.raises(KeyTableError, match="nope"):
        tiny.subset(["caption", "nope"])


def test_official_modality_info_dicts_convert_both_ways(tiny: KeyTable) -> None:
    """ml-4m's dict of dicts is read at the boundary only; what fourm writes reads back to the same facts."""
    for key, info in tiny.items():
        back = KeyInfo.from_official(key, info.as_official())
        same = ("kind", "embedding", "vocab_size", "max_tokens", "image_size", "patch_size", "id", "input", "target")
        assert all(getattr(back, f) == getattr(info, f) for f in same), key
    with pytest.raises(KeyTableError, match="pso"):
        KeyInfo.from_official("x", {"type": "sequence", "pso": "1d", "max_tokens": 4})


# ---------------------------------------------------------------------------------------------- FourMConfig


def test_config_round_trips_through_save_and_load(tiny: KeyTable, tmp_path: Path) -> None:
    config = fourm_config(tiny, "tiny", **SMALL, shuffle_decoder_modalities=False, num_register_tokens=1)
    torch.manual_seed(0)
    model = FourMNetwork(config)
    assert model.config is config and model.keys == tiny
    model.save_pretrained(tmp_path)
    loaded = FourMNetwork.from_pretrained(tmp_path)
    assert loaded.config == config
    assert loaded.shuffle_decoder_modalities is False and loaded.config.shuffle_decoder_modalities is False
    assert read_config(tmp_path) == config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_a_typo_in_config_json_is_an_error_naming_the_field(tiny: KeyTable, tmp_path: Path) -> None:
    FourMNetwork(fourm_config(tiny, "tiny", **SMALL)).save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["num_head"] = data.pop("num_heads")
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValidationError, match="num_head"):
        FourMNetwork.from_pretrained(tmp_path)
    with pytest.raises(ValidationError, match="encoder_dept"):
        fourm_config(tiny, "tiny", encoder_dept=3)


def test_config_checks_domains_and_activation(tiny: KeyTable) -> None:
    config = fourm_config(tiny, "tiny", **SMALL)
    pixels = next(k for k, v in tiny.items() if v.is_pixels)
    with pytest.raises(ValidationError, match="cannot be targets"):
        config.model_validate({**config.model_dump(), "domains_out": [pixels]})
    with pytest.raises(ValidationError, match="not in the key table"):
        config.model_validate({**config.model_dump(), "domains_in": ["rgb@999"]})
    with pytest.raises(ValidationError, match="act_layer"):
        fourm_config(tiny, "tiny", act_layer="Swish")


def _official_config(keys: list[str], targets: list[str]) -> dict:
    """An official-style config.json: domains, image/patch size, sizes and the swiglu_nobias recipe's flags (every
    bias off, a gated SiLU MLP), no key table. Written out here rather than taken from ``RECIPES``: this is the file
    ml-4m writes, which the code must read, not a restatement of the code."""
    return {
        "domains_in": keys,
        "domains_out": targets,
        "image_size": 224,
        "patch_size": 16,
        "dim": 32,
        "encoder_depth": 1,
        "decoder_depth": 1,
        "num_heads": 2,
        "mlp_ratio": 4.0,
        **{f"{part}_bias": False for part in ("qkv", "proj", "mlp", "norm")},
        "act_layer": "SiLU",
        "gated_mlp": True,
        "qk_norm": False,
        "decoder_causal_mask": False,
        "decoder_sep_mask": True,
        "num_register_tokens": 0,
        "share_modality_embeddings": True,
    }


def test_official_config_json_loads_with_the_registry(registry: Registry, tmp_path: Path) -> None:
    keys = ["rgb@224", "caption", "tok_depth@224", "tok_dinov2@224"]
    data = _official_config(keys, ["caption", "tok_depth@224", "tok_dinov2@224"])
    (tmp_path / "config.json").write_text(json.dumps(data))
    config = read_config(tmp_path, registry)
    assert "modality_info" not in data and config.domains_in == keys
    assert sorted(config.keys) == sorted(keys)
    assert config.act_layer == "SiLU" and config.gated_mlp is True
    assert not (config.qkv_bias or config.proj_bias or config.mlp_bias or config.norm_bias)
    # grid keys re-laid at the config's 224 / 16; DINOv2's feature map keeps its own patch of 14
    assert (config.keys["tok_depth@224"].patch_size, config.keys["tok_depth@224"].max_tokens) == (16, 196)
    assert (config.keys["tok_dinov2@224"].patch_size, config.keys["tok_dinov2@224"].max_tokens) == (14, 256)
    assert config.keys["caption"].vocab_size == 30000  # ml-4m's text vocabulary
    model = FourMNetwork(config)
    assert list(model.encoder_embeddings) == keys and model.encoder_embeddings["rgb@224"].pos_emb.shape[1] == 196
    # the weights load strictly from a folder holding only the official config.json
    from safetensors.torch import save_file

    save_file({k: v.clone().contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    loaded = FourMNetwork.from_pretrained(tmp_path, registry=registry)
    assert loaded.config == config
    # and back: fourm's config converts to the official layout, which reads back to an equal config
    assert config.to_official() == {**data, "drop_path_rate_encoder": 0.0, "drop_path_rate_decoder": 0.0} | {
        "shared_drop_path": False
    }
    assert FourMConfig.from_official(config.to_official(), registry) == config


def test_official_config_sizes_are_only_a_fallback(registry: Registry) -> None:
    """ml-4m's ``FM`` takes each key's size from its ``@res`` name and its patch from the modality (16, or 14 for
    DINOv2); the config's ``image_size`` / ``patch_size`` fill in only what a key does not carry."""
    data = {**_official_config(["rgb@224", "tok_depth@224", "tok_dinov2@224"], ["tok_depth@224"]), "patch_size": 32}
    keys = FourMConfig.from_official(data, registry).keys
    assert (keys["rgb@224"].grid, keys["tok_depth@224"].grid) == (14, 14)
    assert keys["tok_dinov2@224"].patch_size == 14 and keys["tok_dinov2@224"].grid == 16
    with pytest.raises(KeyTableError, match="tok_nothing@224"):
        FourMConfig.from_official({**data, "domains_in": ["tok_nothing@224"]}, registry)
    with pytest.raises(ValidationError, match="typo_field"):
        FourMConfig.from_official({**data, "typo_field": 1}, registry)


def test_settings_ml4m_cannot_express_are_refused(tiny: KeyTable) -> None:
    with pytest.raises(ValueError, match="shuffle_decoder_modalities"):
        fourm_config(tiny, "tiny", **SMALL, shuffle_decoder_modalities=False).to_official()


def test_pre_key_table_config_json_still_loads(tiny: KeyTable, tmp_path: Path) -> None:
    """fourm's config.json before the key table: the fields plus an ml-4m ``modality_info`` dict."""
    config = fourm_config(tiny, "tiny", **SMALL)
    old = {**config.model_dump(mode="json", exclude={"keys"}), "modality_info": tiny.as_official()}
    (tmp_path / "config.json").write_text(json.dumps(old))
    loaded = read_config(tmp_path)
    assert loaded.domains_in == config.domains_in and list(loaded.keys) == list(tiny)
    assert all(loaded.keys[k].max_tokens == tiny[k].max_tokens for k in tiny)
