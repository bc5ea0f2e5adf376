"""The published 4M models: ml-4m's ``FM`` config and weights load into fourm strictly and give ml-4m's numbers.

The fixtures under ``tests/fixtures/ml4m/model/`` were made by ``tools/ml4m_fixtures/make_model.py`` with ml-4m's
own ``FM`` (the full 4M-21 key set at tiny widths: the swiglu/no-bias recipe, the GELU recipe with biases, and
qk-norm with register tokens). They hold no weights: the test regenerates them from the recorded recipe (checking
every digest), writes them in the hub layout (``config.json`` + ``model.safetensors``) or as a bare
``.safetensors`` with the config in its metadata, loads them through fourm's public loader and compares the loss,
the per-key losses and the logits with ml-4m's, within 1e-5 relative in fp32.

``python tests/test_official_model.py --compare DIR`` runs the same comparison on the full-size output of
``make_model.py --full --out DIR`` (4M-21 B) and prints the differences.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import save_file

from fourm_core.errors import FileFormatError
from fourm_core.model import FourMNetwork, load_official, official_config, read_official
from fourm_core.testing.deterministic import digest, tensor_values

FIXTURES = Path(__file__).parent / "fixtures" / "ml4m" / "model"
NAMES = sorted(p.name for p in FIXTURES.iterdir() if (p / "config.json").is_file()) if FIXTURES.is_dir() else []
RTOL = 1e-5


# ---------------------------------------------------------------------------------------------- fixture plumbing


def rebuild_state(folder: Path, registry: Any = None) -> dict[str, torch.Tensor]:
    """The state dict ml-4m's model had: regenerated learned tensors (digests checked), shared entries copied,
    buffers ml-4m computes (sin-cos tables, zero no-bias LayerNorm biases) as fourm builds them, checked against the
    stored value where the layout has it."""
    config = json.loads((folder / "config.json").read_text())
    layout: dict[str, dict] = json.loads((folder / "layout.json").read_text())
    built = FourMNetwork(official_config(config, registry)).state_dict()
    state: dict[str, torch.Tensor] = {}
    for name, entry in layout.items():
        shape = tuple(entry["shape"])
        if "same_as" in entry:
            state[name] = state[entry["same_as"]].clone()
        elif entry["sha256"] is None:
            assert name in built, f"{name}: ml-4m builds this buffer, fourm does not"
            state[name] = built[name].detach().clone()
            if "value" in entry:
                torch.testing.assert_close(state[name].flatten(), torch.tensor(entry["value"], dtype=torch.float32))
        else:
            value = tensor_values(name, shape, 0, entry["scale"])
            assert digest(value) == entry["sha256"], f"{name}: the regenerated weights differ from the fixture's"
            state[name] = torch.from_numpy(value)
        assert tuple(state[name].shape) == shape, name
    return state


def write_hub_layout(folder: Path, out: Path, registry: Any = None) -> Path:
    """``out`` holding ``config.json`` + ``model.safetensors``, as a hub repo does."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text((folder / "config.json").read_text())
    save_file(rebuild_state(folder, registry), str(out / "model.safetensors"))
    return out


def batch(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(inputs.json, reference arrays)``."""
    return json.loads((folder / "inputs.json").read_text()), load_numpy(str(folder / "reference.safetensors"))


def mod_dict(meta: dict[str, Any], ref: dict[str, np.ndarray]) -> dict[str, dict[str, torch.Tensor]]:
    """The batch ml-4m saw, in its key order (the decoder shuffle draws depend on it)."""
    out: dict[str, dict[str, torch.Tensor]] = {k: {} for k in meta["keys"]}
    for name, value in ref.items():
        if not name.startswith("input/"):
            continue
        key, field = name[len("input/") :].rsplit("/", 1)
        t = torch.from_numpy(np.array(value))
        out[key][field] = t.bool() if field.endswith("_mask") and field != "decoder_attention_mask" else t
        if field == "tensor":
            out[key][field] = t.long()
        elif field == "decoder_attention_mask":
            out[key][field] = t.int()
    for name, recipe in meta["inputs"].items():
        key, field = name.rsplit("/", 1)
        value = tensor_values(f"input/{key}", recipe["shape"], meta["seed"] + 1, recipe["scale"])
        assert digest(value) == recipe["sha256"], f"{name}: the regenerated input differs from the fixture's"
        out[key][field] = torch.from_numpy(value)
    return out


def run_fourm(model: FourMNetwork, meta: dict[str, Any], ref: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same two calls the fixture script made (seeded identically), with the same summaries."""
    results: dict[str, np.ndarray] = {}
    n_enc, n_dec = meta["num_encoder_tokens"], meta["num_decoder_tokens"]
    with torch.no_grad():
        random.seed(meta["seed"])
        loss, mod_loss = model(mod_dict(meta, ref), n_enc, n_dec, loss_type="mod")
        results["loss"] = loss.reshape(1).float().numpy()
        for k, v in mod_loss.items():
            results[f"mod_loss/{k}"] = v.reshape(1).float().numpy()
        random.seed(meta["seed"])
        logits = model(mod_dict(meta, ref), n_enc, n_dec, return_logits=True)
        for k, v in logits.items():
            results[f"logits_lse/{k}"] = torch.logsumexp(v.float(), dim=-1).numpy()
            results[f"logits_head/{k}"] = v[..., : ref[f"output/logits_head/{k}"].shape[-1]].float().numpy()
    return results


def differences(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """Per output: (max abs difference, max abs difference / max abs reference value)."""
    out = {}
    for name in sorted(k[len("output/") :] for k in ref if k.startswith("output/")):
        theirs, mine = ref[f"output/{name}"].astype(np.float64), ours[name].astype(np.float64)
        assert theirs.shape == mine.shape, f"{name}: shape {mine.shape} != ml-4m's {theirs.shape}"
        diff = np.abs(theirs - mine)
        scale = max(float(np.abs(theirs).max(initial=0.0)), 1e-12)
        out[name] = (float(diff.max(initial=0.0)), float(diff.max(initial=0.0)) / scale)
    missing = sorted(set(ours) - {k[len("output/") :] for k in ref})
    assert not missing, f"fourm returns outputs ml-4m does not: {missing}"
    return out


def check(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> None:
    for name in sorted(k[len("output/") :] for k in ref if k.startswith("output/")):
        np.testing.assert_allclose(ours[name], ref[f"output/{name}"], rtol=RTOL, atol=RTOL, err_msg=name)


# ---------------------------------------------------------------------------------------------- equality with ml-4m


def test_fixtures_exist() -> None:
    assert set(NAMES) >= {"swiglu_nobias", "gelu", "qknorm_registers"}


@pytest.mark.parametrize("name", NAMES)
def test_hub_layout_gives_ml4m_loss_and_logits(name: str, tmp_path: Path, registry: Any) -> None:
    folder = FIXTURES / name
    model = load_official(write_hub_layout(folder, tmp_path / "repo", registry), registry)
    assert not model.training
    layout = json.loads((folder / "layout.json").read_text())
    assert list(model.state_dict()) == list(layout), "state-dict names or order differ from ml-4m's"
    meta, ref = batch(folder)
    ours = run_fourm(model, meta, ref)
    check(ours, ref)
    assert float(ref["output/mod_loss/tok_clip@224"][0]) == 0.0  # a target key without targets still counts


def test_bare_safetensors_with_config_metadata(tmp_path: Path, registry: Any) -> None:
    """ml-4m's ``load_safetensors`` form: every config value a YAML string in the header's ``__metadata__``."""
    folder = FIXTURES / "swiglu_nobias"
    config = json.loads((folder / "config.json").read_text())
    path = tmp_path / "4M-21_tiny.safetensors"
    save_file(rebuild_state(folder, registry), str(path), metadata={k: str(v) for k, v in config.items()})
    read_config_, state = read_official(path)
    assert read_config_ == config
    assert len(state) == len(json.loads((folder / "layout.json").read_text()))
    meta, ref = batch(folder)
    check(run_fourm(load_official(path, registry), meta, ref), ref)


# ---------------------------------------------------------------------------------------------- the config boundary

BASE = json.loads((FIXTURES / "swiglu_nobias" / "config.json").read_text()) if NAMES else {}


def test_every_fm_keyword_is_accepted_and_others_are_named(registry: Any) -> None:
    extra = {"use_act_checkpoint": True, "drop_path_rate_encoder": 0.1, "shared_drop_path": True}
    config = official_config({**BASE, **extra}, registry)
    assert config.use_act_checkpoint and config.share_embedding is False
    with pytest.raises(FileFormatError, match="share_embedding"):
        official_config({**BASE, "share_embedding": True}, registry)
    with pytest.raises(FileFormatError, match="num_headz"):
        official_config({**BASE, "num_headz": 4}, registry)
    assert official_config({"config": BASE}, registry).dim == BASE["dim"]  # the hub mixin's wrapper


def test_4m21_key_table_follows_fm(registry: Any) -> None:
    keys = official_config(BASE, registry).keys
    assert (keys["tok_dinov2@224"].patch_size, keys["tok_dinov2@224"].max_tokens) == (14, 256)
    assert keys["tok_dinov2_global"].max_tokens == 16 and keys["rgb@224"].max_tokens == 196
    assert keys["caption"].vocab_size == 30000 and keys["tok_rgb@224"].vocab_size == 16384


def test_4m7_sr_and_t2i_key_sets_build(registry: Any) -> None:
    small = {k: BASE[k] for k in ("dim", "encoder_depth", "decoder_depth", "num_heads")}
    four_m7 = ["rgb@224", "tok_rgb@224", "tok_depth@224", "tok_semseg@224", "tok_normal@224", "tok_clip@224"]
    seq = ["caption", "det"]
    m7 = FourMNetwork(official_config({"domains_in": four_m7 + seq, "domains_out": four_m7[1:] + seq, **small}))
    assert len(m7.encoder_embeddings) == 8 and len(m7.decoder_embeddings) == 7
    sr_in = ["rgb@448", "tok_rgb@448", "tok_depth@448", "tok_rgb@224", "tok_depth@224", "caption"]
    sr = {"domains_in": sr_in, "domains_out": ["tok_rgb@448", "tok_depth@448"], "image_size": 448, **small}
    net = FourMNetwork(official_config(sr, registry))
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes["encoder_embeddings.rgb@448.pos_emb"] == (1, 784, small["dim"])
    assert shapes["encoder_embeddings.rgb@448.proj.weight"] == (small["dim"], 768)
    assert shapes["decoder_embeddings.tok_depth@448.pos_emb"] == (1, 784, small["dim"])
    assert shapes["encoder_embeddings.tok_rgb@224.pos_emb"] == (1, 196, small["dim"])  # the name keeps its size
    t2i = {"domains_in": ["caption", "t5_caption", "det"], "domains_out": ["tok_rgb@224", "caption", "det"], **small}
    assert "t5_caption" in FourMNetwork(official_config(t2i, registry)).encoder_embeddings


def test_unknown_keys_are_named(registry: Any) -> None:
    with pytest.raises(FileFormatError, match=r"tok_thermal@224.*installed"):
        official_config({**BASE, "domains_in": [*BASE["domains_in"], "tok_thermal@224"]}, registry)
    with pytest.raises(FileFormatError, match=r"'depth'"):  # ml-4m's tokenizer-training key, not a model key
        official_config({**BASE, "domains_in": [*BASE["domains_in"], "depth"]}, registry)


def test_missing_and_unexpected_weights_are_listed_in_one_line(tmp_path: Path, registry: Any) -> None:
    folder = FIXTURES / "gelu"
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "config.json").write_text((folder / "config.json").read_text())
    state = rebuild_state(folder, registry)
    del state["mask_token"]
    state["encoder.0.attn.extra"] = torch.zeros(2)
    save_file(state, str(repo / "model.safetensors"))
    with pytest.raises(FileFormatError) as info:
        load_official(repo, registry)
    message = str(info.value)
    assert "\n" not in message and str(repo) in message
    assert "1 missing: mask_token" in message and "1 unexpected: encoder.0.attn.extra" in message


def test_pickles_are_never_read(tmp_path: Path, registry: Any) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "config.json").write_text(json.dumps(BASE))
    (repo / "pytorch_model.bin").write_bytes(b"not to be unpickled")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_official(repo, registry)


# ---------------------------------------------------------------------------------------------- full size (script)


def compare(directory: Path) -> int:
    """Print the full-size comparison (``make_model.py --full --out DIR``): key list, shapes, loss, logits."""
    from fourm_core.registry import Registry

    folder = directory / "4M-21_B" if (directory / "4M-21_B").is_dir() else directory
    registry = Registry()
    layout = json.loads((folder / "layout.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    net = FourMNetwork(official_config(config, registry))
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    theirs = {k: tuple(v["shape"]) for k, v in layout.items()}
    n_params = sum(p.numel() for p in net.parameters())
    same_order = list(ours) == list(theirs)
    print(f"state-dict keys: fourm {len(ours)}, ml-4m {len(theirs)}; identical names and order: {same_order}")
    print(f"identical shapes: {ours == theirs}; parameters {n_params / 1e6:.1f}M")
    del net
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        model = load_official(write_hub_layout(folder, Path(tmp) / "repo", registry), registry)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    meta, ref = batch(folder)
    diffs = differences(run_fourm(model, meta, ref), ref)
    worst = max(diffs.items(), key=lambda kv: kv[1][1])
    print(f"loss ml-4m {ref['output/loss'][0]:.7f}, abs diff {diffs['loss'][0]:.3g}, rel diff {diffs['loss'][1]:.3g}")
    print(f"max abs diff over every output: {max(d[0] for d in diffs.values()):.3g}")
    print(f"max rel diff over every output: {worst[1][1]:.3g} ({worst[0]})")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--compare":
        raise SystemExit(compare(Path(sys.argv[2])))
    raise SystemExit("usage: python tests/test_official_model.py --compare DIR")


def test_decoder_positions_stop_where_ml4m_embeddings_stop(registry: Any) -> None:
    """ml-4m's decoder embeddings of metadata and poses are 40 and 263 long (below their 43 / 275 token budgets):
    target positions at or past that share position 0, in fourm as in ml-4m, so long targets score the same."""
    config = official_config(BASE, registry)
    assert config.keys["human_poses"].decoder_positions == 263
    assert config.keys["metadata"].decoder_positions == 40
    assert config.keys["caption"].decoder_positions is None  # 256 == max_tokens: nothing to say
    emb = FourMNetwork(config).decoder_embeddings["human_poses"]
    n = 300
    d = {"tensor": torch.ones(1, n, dtype=torch.long), "target_mask": torch.zeros(1, n, dtype=torch.bool)}
    pos = emb.forward_embed(d)["emb"] - emb.mod_emb
    assert torch.equal(pos[0, 263], pos[0, 0]) and torch.equal(pos[0, 299], pos[0, 0])
    assert not torch.equal(pos[0, 262], pos[0, 0])
