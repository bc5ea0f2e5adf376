"""The official VQ-VAE tokenizers (ml-4m's ``VQVAE``: semseg, CLIP, DINOv2, ImageBind, their global variants, SAM
instances, human poses) load strictly through fourm's public loader and give ml-4m's numbers.

Each fixture under ``tests/fixtures/ml4m/tokenizers/<name>/`` was made by ``tools/ml4m_fixtures/make_vqvae.py`` with
ml-4m's own classes at reduced width. The test regenerates the weights from the layout (checking every digest),
writes the hub layout (``config.json`` + ``model.safetensors``), loads it with
:func:`fourm_core.tokenizers.official.load_official_tokenizer` and compares: tokens exactly, decodings within
``TOL`` of the reference measured as max |fourm - ml-4m| / max(1, max |ml-4m|) (absolute for outputs of scale up to
1, relative to the largest magnitude above that).

``python tests/test_official_vqvae.py --compare DIR`` compares fourm with the full-size references that
``make_vqvae.py --full --out DIR`` writes, and prints the table for the closing note.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from fourm_core.testing.deterministic import digest, tensor_values
from fourm_core.tokenizers.official import (
    VQVAE,
    OfficialTokenizerError,
    is_official_tokenizer_config,
    load_official_tokenizer,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ml4m" / "tokenizers"
#: the eight released VQ-VAE tokenizers (the folder also holds the diffusion tokenizers' fixtures)
NAMES = [
    "CLIP-B16_8k_224-448",
    "DINOv2-B14-global_8k_16_224",
    "DINOv2-B14_8k_224-448",
    "ImageBind-H14-global_8k_16_224",
    "ImageBind-H14_8k_224-448",
    "human-poses_1k_8",
    "sam-instance_1k_64",
    "semseg_4k_224-448",
]
SEED = 0
TOL = 1e-4


def materialize(fixture: Path, out: Path) -> Path:
    """Rebuild the fixture's state dict (regenerated values, digests checked) and write the hub layout to ``out``."""
    layout = json.loads((fixture / "layout.json").read_text())
    state: dict[str, torch.Tensor] = {}
    for name, entry in layout.items():
        dtype = getattr(torch, entry["dtype"])
        if entry["sha256"] is None:
            state[name] = torch.tensor(entry["value"], dtype=dtype).reshape(entry["shape"])
            continue
        value = tensor_values(name, entry["shape"], SEED, entry["scale"])
        assert digest(value) == entry["sha256"], f"{fixture.name}: regenerated {name} differs from the fixture's"
        state[name] = torch.from_numpy(value).to(dtype)
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "model.safetensors"))
    (out / "config.json").write_text((fixture / "config.json").read_text())
    return out


def reference(fixture: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(fixture / "reference.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def error(ours: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(max abs difference, that difference over max(1, max |ref|))."""
    diff = float((ours.double() - ref.double()).abs().max())
    return diff, diff / max(1.0, float(ref.abs().max()))


def check_against(model: torch.nn.Module, ref: dict[str, torch.Tensor]) -> dict[str, float]:
    """Every comparison for one tokenizer; returns the measured errors."""
    x = ref["input"]
    with torch.no_grad():
        quant, code_loss, tokens = model.encode(x)
        decoded = model.decode_tokens(ref["tokens"])
        auto = model.autoencode(x)
        fwd, fwd_loss = model(x)
    assert tokens.dtype == torch.int64
    assert torch.equal(tokens, ref["tokens"]), "tokens differ from ml-4m's"
    assert torch.equal(model.tokenize(x), ref["tokens"])
    assert torch.equal(fwd_loss.reshape(-1), ref["code_loss"])
    errors = {}
    for label, ours in (("decode_tokens", decoded), ("autoencode", auto), ("forward", fwd)):
        assert ours.shape == ref["decoded"].shape, f"{label}: shape {tuple(ours.shape)}"
        errors[label] = error(ours, ref["decoded"])[1]
        assert errors[label] <= TOL, f"{label}: {errors[label]:.3g} > {TOL}"
    if "quant" in ref:
        errors["quant"] = error(quant, ref["quant"])[1]
        assert errors["quant"] <= TOL
    return errors


@pytest.fixture(scope="module")
def hub_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("official_vq")
    return {name: materialize(FIXTURES / name, root / name) for name in NAMES}


def test_all_eight_released_tokenizers_have_fixtures() -> None:
    for name in NAMES:
        assert all((FIXTURES / name / f).is_file() for f in ("config.json", "layout.json", "reference.safetensors"))


@pytest.mark.parametrize("name", NAMES)
def test_official_vqvae_matches_ml4m(name: str, hub_folders: dict[str, Path]) -> None:
    model = load_official_tokenizer(hub_folders[name])
    assert isinstance(model, VQVAE) and not model.training
    ref, meta = reference(FIXTURES / name)
    assert meta.get("autoencode") == "equals decoded" and meta.get("forward") == "equals decoded"
    check_against(model, ref)
    # encoder-only loading (tokenizing without the decoder) gives the same tokens
    enc = load_official_tokenizer(hub_folders[name], encoder_only=True)
    assert not any(k.startswith("decoder.") for k in enc.state_dict())
    with torch.no_grad():
        assert torch.equal(enc.tokenize(ref["input"]), ref["tokens"])
    with pytest.raises(NotImplementedError):
        enc.decode_tokens(ref["tokens"])


def test_state_dict_names_are_ml4ms_in_order(hub_folders: dict[str, Path]) -> None:
    for name in NAMES:
        layout = json.loads((FIXTURES / name / "layout.json").read_text())
        model = load_official_tokenizer(hub_folders[name])
        assert list(model.state_dict()) == list(layout), name


def test_train_mode_forward_keeps_the_codebook(hub_folders: dict[str, Path]) -> None:
    """Training-time EMA updates are not implemented: train mode quantizes the same way, passes gradients straight
    through and leaves every buffer untouched."""
    name = "CLIP-B16_8k_224-448"
    model = load_official_tokenizer(hub_folders[name]).train()
    ref, _ = reference(FIXTURES / name)
    before = {k: v.clone() for k, v in model.named_buffers()}
    x = ref["input"].clone().requires_grad_(True)
    dec, loss = model(x)
    (dec.square().mean() + loss.sum()).backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert float(loss.detach()) > 0  # the commitment loss
    assert all(torch.equal(before[k], v) for k, v in model.named_buffers())
    assert error(dec.detach(), ref["decoded"])[1] <= TOL


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "model.safetensors"):
        (dst / f).write_bytes((src / f).read_bytes())
    return dst


def test_unknown_config_key_is_refused_by_name(hub_folders: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(hub_folders["human-poses_1k_8"], tmp_path / "t")
    config = json.loads((folder / "config.json").read_text())
    config["n_channel"] = 207
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(OfficialTokenizerError, match=r"'n_channel' \(did you mean 'n_channels'\?\)"):
        load_official_tokenizer(folder)
    # training-only keywords of ml-4m are accepted and ignored
    del config["n_channel"]
    config.update(ckpt_path="/somewhere/ckpt.pth", freeze_enc=True, threshold_ema_dead_code=2.0)
    # and so are the options of ml-4m's training script, which builds the tokenizer from ``vars(args)``
    config.update(domain="human_poses", loss_fn="smooth_l1", epochs=100, quantizer_type="memcodes", blr=1e-4)
    (folder / "config.json").write_text(json.dumps({"config": config}))  # the hub mixin's wrapper
    assert isinstance(load_official_tokenizer(folder), VQVAE)


def test_missing_or_unexpected_weights_are_named(hub_folders: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(hub_folders["sam-instance_1k_64"], tmp_path / "t")
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    del state["decoder.out_conv.1.gamma"]
    state["encoder.extra"] = torch.zeros(1)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(OfficialTokenizerError) as info:
        load_official_tokenizer(folder)
    message = str(info.value)
    assert "1 missing: decoder.out_conv.1.gamma" in message and "1 unexpected: encoder.extra" in message
    assert "\n" not in message and "model.safetensors" in message


def test_bad_folders_give_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text("[1, 2]")
    (tmp_path / "a" / "model.safetensors").write_bytes(b"")
    with pytest.raises(OfficialTokenizerError, match="not an ml-4m tokenizer config"):
        load_official_tokenizer(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text('{"enc_type": "vit_b_enc"}')
    with pytest.raises(OfficialTokenizerError, match="no model.safetensors"):
        load_official_tokenizer(tmp_path / "b")
    (tmp_path / "b" / "model.safetensors").write_bytes(b"\x00")
    (tmp_path / "b" / "config.json").write_text('{"enc_type": ')
    with pytest.raises(OfficialTokenizerError, match="config.json: not a valid"):
        load_official_tokenizer(tmp_path / "b")


def test_official_configs_are_told_from_fourms_own() -> None:
    official = json.loads((FIXTURES / "semseg_4k_224-448" / "config.json").read_text())
    assert is_official_tokenizer_config(official)
    assert is_official_tokenizer_config({"config": official})
    assert not is_official_tokenizer_config({"config": {"family": "vqvae", "codebook_size": 8}, "info": {}})
    assert not is_official_tokenizer_config([official])
    assert not is_official_tokenizer_config({"codebook_size": 8})


def test_hub_id_loads_from_the_local_cache_offline(
    hub_folders: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A repo id resolves through the hub cache (its own layout, HF_HUB_OFFLINE=1); an uncached one fails in one
    line naming the repo id, before anything is built."""
    from fourm_core.hub import HubAssetError

    repo = "EPFL-VILAB/4M_tokenizers_human-poses_1k_8"
    commit = "0" * 40
    cached = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
    _copy(hub_folders["human-poses_1k_8"], cached / "snapshots" / commit)
    (cached / "refs").mkdir()
    (cached / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_official_tokenizer(repo)
    ref, _ = reference(FIXTURES / "human-poses_1k_8")
    with torch.no_grad():
        assert torch.equal(model.tokenize(ref["input"]), ref["tokens"])
    with pytest.raises(HubAssetError, match="EPFL-VILAB/4M_tokenizers_semseg_4k_224-448") as info:
        load_official_tokenizer("EPFL-VILAB/4M_tokenizers_semseg_4k_224-448")
    assert "\n" not in str(info.value)


def compare(folder: Path) -> int:
    """Print, per full-size reference in ``folder``, whether the tokens are equal and the decodings' errors."""
    import tempfile

    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fixture in sorted(p for p in folder.iterdir() if p.name in NAMES and (p / "layout.json").is_file()):
            model = load_official_tokenizer(materialize(fixture, Path(tmp) / fixture.name))
            ref, _ = reference(fixture)
            with torch.no_grad():
                tokens = model.tokenize(ref["input"])
                decoded = model.decode_tokens(ref["tokens"])
                auto = model.autoencode(ref["input"])
            same = torch.equal(tokens, ref["tokens"])
            share = float((tokens == ref["tokens"]).double().mean())
            abs_d, rel_d = error(decoded, ref["decoded"])
            abs_a, rel_a = error(auto, ref["decoded"])
            n_params = sum(p.numel() for p in model.state_dict().values())
            rows.append(
                f"| {fixture.name} | {n_params / 1e6:.1f}M | {tuple(tokens.shape)} | {same} ({share:.4f}) | "
                f"{abs_d:.2e} / {rel_d:.2e} | {abs_a:.2e} / {rel_a:.2e} |"
            )
            del model
    print("| tokenizer | state-dict values | tokens | tokens equal (share) | decode_tokens max abs / scaled |", end="")
    print(" autoencode |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--compare":
        raise SystemExit(compare(Path(sys.argv[2])))
    raise SystemExit(f"usage: {sys.argv[0]} --compare DIR (DIR written by make_vqvae.py --full --out DIR)")
