"""The official diffusion tokenizers (ml-4m's ``DiVAE``: RGB, depth, normals, edges with a U-Net or a UViT decoder)
load strictly through fourm's public loader and give ml-4m's numbers; the schedulers step as ml-4m's do.

Fixtures under ``tests/fixtures/ml4m/tokenizers/<name>/`` come from ``tools/ml4m_fixtures/make_divae.py`` (ml-4m's
own classes at reduced width). The test regenerates the weights from the layout (checking every digest), writes the
hub layout as ``safetensors.torch.save_model`` would (one name per shared tensor), loads it with
:func:`load_official_tokenizer` and compares tokens exactly and every decoding within ``TOL`` (absolute, or relative
to the largest magnitude when above 1) for the same generator seed, steps and scheduler.

``python tests/test_official_divae.py --compare DIR`` compares fourm with the full-size references of
``make_divae.py --full --out DIR`` and prints the table for the closing note.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from fourm_core.testing.deterministic import digest, tensor_values
from fourm_core.tokenizers.official import OfficialTokenizerError, load_official_tokenizer
from fourm_core.tokenizers.official.diffusion import DDIMScheduler, make_scheduler
from fourm_core.tokenizers.official.divae import DiVAE

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ml4m" / "tokenizers"
NAMES = ["rgb_16k_224-448", "depth_8k_224-448", "normal_8k_224-448", "edge_8k_224-512", "edge_8k_224-512_uvit"]
SCHEDULERS_FILE = FIXTURES / "divae_schedulers.safetensors"
SEED = 0
TOL = 1e-4


def materialize(fixture: Path, out: Path) -> Path:
    """Rebuild the state dict (digests checked), leave out aliased names as the hub's writer does, write the hub
    layout (``config.json`` + ``model.safetensors``) to ``out``."""
    layout = json.loads((fixture / "layout.json").read_text())
    state: dict[str, torch.Tensor] = {}
    for name, entry in layout.items():
        if "alias_of" in entry:
            continue
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


def reference(fixture: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(fixture / "reference.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max |fourm - ml-4m| / max(1, max |ml-4m|)."""
    assert ours.shape == ref.shape, f"shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    return float((ours.double() - ref.double()).abs().max()) / max(1.0, float(ref.abs().max()))


def run_all(model: DiVAE, ref: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fourm's outputs for every reference (same seeds, steps and schedulers as make_divae.references)."""
    x, size = ref["input"], tuple(ref["input"].shape[-2:])
    with torch.no_grad():
        tokens = model.tokenize(x)
        fwd, loss = model(input_clean=x, input_noised=ref["input_noised"], timesteps=ref["timesteps"])
        g = torch.Generator().manual_seed(0)
        ddpm2 = model.decode_tokens(ref["tokens"], timesteps=2, generator=g, image_size=size)
        g = torch.Generator().manual_seed(1)
        ddim3 = model.decode_tokens(ref["tokens"], timesteps=3, generator=g, image_size=size, scheduler="ddim")
        g = torch.Generator().manual_seed(2)
        auto2 = model.autoencode(x, timesteps=2, generator=g, verbose=False)
    return {
        "tokens": tokens,
        "forward": fwd,
        "code_loss": loss.reshape(-1),
        "decode_ddpm2": ddpm2,
        "decode_ddim3_trailing": ddim3,
        "autoencode_ddpm2": auto2,
    }


@pytest.fixture(scope="module")
def hub_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("official_divae")
    return {name: materialize(FIXTURES / name, root / name) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_official_divae_matches_ml4m(name: str, hub_folders: dict[str, Path]) -> None:
    model = load_official_tokenizer(hub_folders[name])
    assert isinstance(model, DiVAE) and not model.training
    ref = reference(FIXTURES / name)
    ours = run_all(model, ref)
    assert ours["tokens"].dtype == torch.int64
    assert torch.equal(ours["tokens"], ref["tokens"]), "tokens differ from ml-4m's"
    for key in ("forward", "code_loss", "decode_ddpm2", "decode_ddim3_trailing", "autoencode_ddpm2"):
        assert error(ours[key], ref[key]) <= TOL, f"{name} {key}: {error(ours[key], ref[key]):.3g}"
    # the zero-initialised output layers were replaced: the decodings are not trivially zero
    assert float(ref["forward"].abs().max()) > 1e-3


def test_state_dict_names_are_the_hub_files(hub_folders: dict[str, Path]) -> None:
    """state_dict() lists ml-4m's names in ml-4m's order, less the aliases the hub's writer drops; ml-4m's
    in-memory state dict (with the aliases) loads too."""
    for name in NAMES:
        layout = json.loads((FIXTURES / name / "layout.json").read_text())
        model = load_official_tokenizer(hub_folders[name])
        assert list(model.state_dict()) == [k for k, v in layout.items() if "alias_of" not in v], name
    name = "edge_8k_224-512_uvit"
    layout = json.loads((FIXTURES / name / "layout.json").read_text())
    model = load_official_tokenizer(hub_folders[name])
    full = dict(model.state_dict())
    for key, entry in layout.items():
        if "alias_of" in entry:
            full[key] = full[entry["alias_of"]].clone()
    assert any("alias_of" in v for v in layout.values())
    model.load_state_dict(full, strict=True)


def test_schedulers_step_as_ml4ms() -> None:
    """ml-4m's PipelineCond loop with an analytic model, for every scheduler / beta schedule / prediction type /
    zero-terminal-SNR / timestep mode: same timesteps, same cumulative alphas, same samples."""
    with safe_open(str(SCHEDULERS_FILE), framework="pt") as f:
        ref = {k: f.get_tensor(k) for k in f.keys()}
    cond = torch.linspace(-1, 1, 8).reshape(1, 2, 2, 2)

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tt = torch.as_tensor(t, dtype=torch.float32) / 1000.0
        return torch.tanh(0.7 * x + 0.3 * cond.mean() - tt) * 1.3

    cases = [k for k in ref if k.count("|") == 4]
    assert len(cases) == 84
    for key in cases:
        sched, beta, pred, zts, mode = key.split("|")
        zero_snr = zts == "zts=1"
        kw = {"beta_schedule": beta, "prediction_type": pred, "zero_terminal_snr": zero_snr}
        s = make_scheduler(sched, **kw, thresholding=True, clip_sample=False)
        assert torch.equal(s.alphas_cumprod, ref[f"alphas_cumprod|{beta}|{zts}"]), key
        g = torch.Generator().manual_seed(7)
        image = torch.randn((1, 2, 4, 4), generator=g)
        s.set_timesteps(3, mode=mode)
        assert torch.equal(s.timesteps, ref[key + "|timesteps"]), key
        for t in s.timesteps:
            image = s.step(model(image, t).float(), t, image, generator=g).prev_sample
        assert torch.allclose(image, ref[key], atol=1e-6, rtol=0, equal_nan=True), key


def test_ddim_trailing_keeps_ml4ms_integer_stride() -> None:
    s = DDIMScheduler(num_train_timesteps=1000)
    s.set_timesteps(3)
    assert s.timesteps.tolist() == [999, 666, 333, 0]  # diffusers' float stride would give 999, 666, 332
    with pytest.raises(ValueError, match="choices: leading, trailing, linspace"):
        s.set_timesteps(3, mode="uniform")


def test_unknown_scheduler_names_are_refused(hub_folders: dict[str, Path], tmp_path: Path) -> None:
    model = load_official_tokenizer(hub_folders["depth_8k_224-448"])
    tokens = reference(FIXTURES / "depth_8k_224-448")["tokens"]
    with pytest.raises(OfficialTokenizerError, match=r"unknown diffusion scheduler 'pndm'; choices: ddpm, ddim"):
        model.decode_tokens(tokens, timesteps=1, scheduler="pndm")
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes((hub_folders["depth_8k_224-448"] / "model.safetensors").read_bytes())
    config = json.loads((hub_folders["depth_8k_224-448"] / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "scheduler": "euler"}))
    with pytest.raises(OfficialTokenizerError, match="choices: ddpm, ddim"):
        load_official_tokenizer(folder)
    (folder / "config.json").write_text(json.dumps({**config, "dec_type": "unet_tiny"}))
    with pytest.raises(OfficialTokenizerError, match="choices: unet_patched"):
        load_official_tokenizer(folder)


def test_training_forward_has_gradients_and_cfg_dropout(hub_folders: dict[str, Path]) -> None:
    model = load_official_tokenizer(hub_folders["edge_8k_224-512_uvit"]).train()
    model.cls_free_guidance_dropout, model.masked_cfg = 1.0, True
    ref = reference(FIXTURES / "edge_8k_224-512_uvit")
    dec, loss = model(input_clean=ref["input"], input_noised=ref["input_noised"], timesteps=ref["timesteps"])
    (dec.square().mean() + loss.sum()).backward()
    grads = [p.grad for p in model.decoder.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and float(loss.detach()) > 0


# -- full-size comparison (not CI) -------------------------------------------------------------------------------


def compare(root: Path) -> int:
    """Print tokens equality and max abs / rel differences for the full-size references under ``root``."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(
        "| tokenizer | tokens equal | forward max abs | DDPM-2 decode max abs | DDIM-3 max abs | autoencode max abs |"
    )
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for name in NAMES:
        fixture = root / name
        if not fixture.is_dir():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            start = time.time()
            model = load_official_tokenizer(materialize(fixture, Path(tmp) / name))
            ref = reference(fixture)
            ours = run_all(model, ref)
        diffs = {k: float((ours[k].double() - ref[k].double()).abs().max()) for k in ours if k != "tokens"}
        same = torch.equal(ours["tokens"], ref["tokens"])
        worst = max([worst, *(diffs[k] for k in diffs if k != "code_loss")])
        print(
            f"| {name} | {same} | {diffs['forward']:.2e} | {diffs['decode_ddpm2']:.2e} | "
            f"{diffs['decode_ddim3_trailing']:.2e} | {diffs['autoencode_ddpm2']:.2e} | ({time.time() - start:.0f} s)"
        )
    return 0 if worst <= TOL else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--compare":
        raise SystemExit(compare(Path(sys.argv[2])))
    raise SystemExit("usage: python tests/test_official_divae.py --compare DIR")
