"""Reference outputs of ml-4m's ``DiVAE`` (diffusion tokenizers) and of its schedulers, for fourm's test.

For each released diffusion tokenizer (``EPFL-VILAB/4M_tokenizers_<name>``) this builds ml-4m's own ``DiVAE`` with
the constructor config ml-4m derives for it (the yaml under ``cfgs/default/tokenization/divae/`` after the renames of
``fourm/vq/__init__.py::get_image_tokenizer``; the edge tokenizer at 512 px, reference 9.4, once with the
``unet_patched`` decoder its yaml names and once with the ``uvit_b_p4_f16`` its file size points to). Keys the yaml
does not set (``scheduler``, ``thresholding``, ``zero_terminal_snr``, ``conditioning``) are written with ml-4m's
``DiVAE`` defaults; the encoder position embedding is built at 224 px as in ``make_vqvae.py``. Every floating
parameter and buffer gets :mod:`fourm_core.testing.deterministic` values (so the zero-initialised output convolutions
and adaLN gates are non-zero), and the fixture holds, under ``tests/fixtures/ml4m/tokenizers/<name>/``:

* ``config.json``: the constructor keywords; the CI fixtures reduce ``image_size`` / ``image_size_enc`` and carry
  ``fourm_size_overrides`` (encoder ViT and decoder sizes), applied here by wrapping ml-4m's builders;
* ``layout.json``: as ``make_vqvae.py``'s, plus ``"alias_of"`` for a name whose tensor is shared with an earlier one
  and which ``safetensors.torch.save_model`` (the hub's writer) therefore leaves out (the UViT's
  ``downsample_mid.conv.*``);
* ``reference.safetensors``: the input, tokens, the training ``forward(input_clean, input_noised, timesteps)``
  output, ``decode_tokens`` with a seeded CPU generator for the default DDPM (2 steps) and for DDIM with
  ``trailing`` spacing (3 steps, which ml-4m turns into 4 timesteps), and ``autoencode`` (2 steps).

``tests/fixtures/ml4m/tokenizers/divae_schedulers.safetensors`` holds ml-4m's ``PipelineCond`` run with a fixed
analytic "model" for every scheduler x beta schedule x prediction type x zero-terminal-SNR x timestep mode.

Run in the side environment (see README.md)::

    ML4M_SRC=../side/ml4m-src ../side/venv/bin/python tools/ml4m_fixtures/make_divae.py
    ML4M_SRC=../side/ml4m-src ../side/venv/bin/python tools/ml4m_fixtures/make_divae.py --full --out /tmp/full_divae

``--full`` writes the published sizes at 224 px inputs (not committed); compare with
``.venv/bin/python tests/test_official_divae.py --compare DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_vqvae as vq  # noqa: E402  (its deterministic weights, scales and ViT builder patching)

OUT = vq.OUT
SEED = 0

_BASE = {
    "enc_type": "vit_b_enc",
    "dec_type": "unet_patched",
    "post_mlp": True,
    "patch_size": 16,
    "quant_type": "lucid",
    "latent_dim": 32,
    "norm_codes": True,
    "norm_latents": False,
    "num_codebooks": 1,
    "commitment_weight": 1.0,
    "code_replacement_policy": "batch_random",
    "ema_decay": 0.99,
    "kmeans_init": False,
    "sync_codebook": False,
    "undo_std": False,
    "image_size": 448,
    "image_size_enc": 224,
    "num_train_timesteps": 1000,
    "prediction_type": "sample",
    "beta_schedule": "linear",
    "cls_free_guidance_dropout": 0.0,
    "masked_cfg": False,
    "scheduler": "ddpm",
    "thresholding": True,
    "zero_terminal_snr": True,
    "conditioning": "concat",
}
TINY_VIT = {"dim_tokens": 32, "depth": 1, "num_heads": 2}
TINY_UNET = {"model_channels": 32, "num_res_blocks": 1, "channel_mult": [1, 2], "attention_resolutions": [2]}
TINY_UVIT = {
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "mid_layers": 1,
    "mid_num_heads": 2,
    "mid_dim": 32,
    "mid_hw_posemb": 4,
}
CI_TOP = {"image_size": 64, "image_size_enc": 32}
#: name -> full config; CI input (B, C, H, W) and full input
TOKENIZERS: dict[str, dict] = {
    "rgb_16k_224-448": {**_BASE, "n_channels": 3, "codebook_size": 16384, "clip_sample": True},
    "depth_8k_224-448": {**_BASE, "n_channels": 1, "codebook_size": 8192, "clip_sample": False},
    "normal_8k_224-448": {**_BASE, "n_channels": 3, "codebook_size": 8192, "clip_sample": True},
    "edge_8k_224-512": {**_BASE, "n_channels": 1, "codebook_size": 8192, "clip_sample": False, "image_size": 512},
    "edge_8k_224-512_uvit": {
        **_BASE,
        "n_channels": 1,
        "codebook_size": 8192,
        "clip_sample": False,
        "image_size": 512,
        "dec_type": "uvit_b_p4_f16",
        "dec_transformer_dropout": 0.2,
    },
}


def patch_decoders(overrides: dict) -> None:
    """Make ml-4m's ``unet_patched`` / ``uvit_*`` builders honour ``fourm_size_overrides["decoder"]``."""
    import fourm.vq.models.unet.unet as unet
    import fourm.vq.models.uvit as uvit

    originals = getattr(patch_decoders, "_originals", None)
    if originals is None:
        originals = {
            "unet_patched": unet.unet_patched,
            **{n: getattr(uvit, n) for n in dir(uvit) if n.startswith("uvit_")},
        }
        patch_decoders._originals = originals  # type: ignore[attr-defined]
    extra = overrides.get("decoder")
    unet.unet_patched = originals["unet_patched"]
    for name, fn in originals.items():
        if name.startswith("uvit_"):
            setattr(uvit, name, fn)
    if not extra:
        return

    def unet_builder(**kwargs):
        kw = {"patch_size": 4, "model_channels": 256, "num_res_blocks": 3, "attention_resolutions": [4, 8]}
        kw.update(channel_mult=(1, 2, 2, 2), **kwargs)
        kw.update(extra)
        return unet.PatchedUNetCondCat(**kw)

    unet.unet_patched = unet_builder
    presets = {
        "uvit_b_p4_f16": {"block_out_channels": (128, 256), "downsample_before_mid": True, "mid_layers": 12},
    }
    for name, base in presets.items():

        def uvit_builder(_base=base, **kwargs):
            kw = {"patch_size": 4, "layers_per_block": 2, "mid_num_heads": 12, "mid_dim": 768, "mid_mlp_ratio": 4}
            kw.update(mid_qkv_bias=True, **_base)
            kw.update(kwargs)
            kw.update(extra)
            return uvit.UViT(**kw)

        setattr(uvit, name, uvit_builder)


def build(config: dict):
    """ml-4m's DiVAE for ``config`` with deterministic weights, and the layout of its state dict."""
    import torch
    from fourm.vq.vqvae import DiVAE
    from safetensors.torch import save_model

    kwargs = dict(config)
    overrides = kwargs.pop("fourm_size_overrides", {})
    vq.patch_builders(overrides)
    patch_decoders(overrides)
    torch.manual_seed(SEED)
    model = DiVAE(**kwargs).eval()
    with tempfile.TemporaryDirectory() as tmp:  # the names the hub's writer keeps
        save_model(model, f"{tmp}/m.safetensors")
        from safetensors import safe_open

        with safe_open(f"{tmp}/m.safetensors", framework="pt") as f:
            hub_names = set(f.keys())
    layout: dict[str, dict] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        entry: dict = {"shape": list(tensor.shape), "dtype": str(tensor.dtype).replace("torch.", "")}
        ptr = tensor.data_ptr()
        if name not in hub_names:
            entry["alias_of"] = next(n for n in hub_names if model.state_dict()[n].data_ptr() == ptr)
            layout[name] = entry
            continue
        if vq.kept_as_built(name) or not tensor.is_floating_point():
            entry["sha256"] = None
            entry["value"] = tensor.detach().flatten().tolist()
        else:
            scale = vq.weight_scale(name, tuple(tensor.shape))
            value = vq.det.tensor_values(name, tuple(tensor.shape), SEED, scale)
            with torch.no_grad():
                tensor.copy_(torch.from_numpy(value))
            entry["sha256"] = vq.det.digest(value)
            entry["scale"] = scale
        layout[name] = entry
    return model, layout


def references(model, config: dict, shape: tuple[int, ...], seed: int) -> dict:
    """Every reference array for one tokenizer (inputs drawn from numpy with ``seed``)."""
    import torch
    from fourm.vq.scheduling import DDIMScheduler

    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.uniform(-1, 1, size=shape).astype(np.float32))
    noised = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    t = torch.tensor([10, 700][: shape[0]] + [500] * max(0, shape[0] - 2))
    size = tuple(shape[-2:])
    ddim = DDIMScheduler(
        num_train_timesteps=config["num_train_timesteps"],
        thresholding=config["thresholding"],
        clip_sample=config["clip_sample"],
        beta_schedule=config["beta_schedule"],
        prediction_type=config["prediction_type"],
        zero_terminal_snr=config["zero_terminal_snr"],
    )
    with torch.no_grad():
        quant, code_loss, tokens = model.encode(x)
        fwd, fwd_loss = model(input_clean=x, input_noised=noised, timesteps=t)
        g = torch.Generator().manual_seed(0)
        ddpm2 = model.decode_tokens(tokens, timesteps=2, generator=g, image_size=size, verbose=False)
        g = torch.Generator().manual_seed(1)
        ddim3 = model.decode_tokens(tokens, timesteps=3, generator=g, image_size=size, scheduler=ddim, verbose=False)
        g = torch.Generator().manual_seed(2)
        auto2 = model.autoencode(x, timesteps=2, generator=g, verbose=False)
    return {
        "input": x,
        "input_noised": noised,
        "timesteps": t,
        "tokens": tokens,
        "forward": fwd,
        "code_loss": fwd_loss.reshape(-1),
        "decode_ddpm2": ddpm2,
        "decode_ddim3_trailing": ddim3,
        "autoencode_ddpm2": auto2,
    }


def write(name: str, config: dict, shape: tuple[int, ...], out: Path) -> None:
    from safetensors.torch import save_file

    model, layout = build(config)
    arrays = {k: v.contiguous() for k, v in references(model, config, shape, seed=len(name)).items()}
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "layout.json").write_text(json.dumps(layout, indent=1) + "\n")
    save_file(arrays, str(folder / "reference.safetensors"), metadata={"seed": str(SEED)})
    tokens = arrays["tokens"]
    print(f"{name}: tokens {tuple(tokens.shape)}, decoded {tuple(arrays['decode_ddpm2'].shape)} -> {folder}")


class _AnalyticModel:
    """A stand-in decoder for the scheduler references: a fixed smooth function of (x, t, cond)."""

    sample_size = 4
    in_channels = 2

    def __call__(self, x, t, cond, **_):
        import torch

        tt = torch.as_tensor(t, dtype=torch.float32) / 1000.0
        return torch.tanh(0.7 * x + 0.3 * cond.mean() - tt) * 1.3


SCHEDULE_CASES = [
    (sched, beta, pred, zts, mode)
    for sched, modes in (("ddpm", ("trailing",)), ("ddim", ("trailing", "leading", "linspace")))
    for beta in ("linear", "scaled_linear", "squaredcos_cap_v2", "shifted_cosine:0.5")
    for pred in ("sample", "epsilon", "v_prediction")
    for zts in (True, False)
    for mode in modes
    if not (beta.startswith("shifted") and not zts)  # zero_terminal_snr is ignored for shifted_cosine
]


def case_key(case: tuple) -> str:
    sched, beta, pred, zts, mode = case
    return f"{sched}|{beta}|{pred}|zts={int(zts)}|{mode}"


def write_schedulers(out: Path) -> None:
    """ml-4m's PipelineCond loop (3 steps, thresholding on) for every case, with the analytic model."""
    import torch
    from fourm.vq.scheduling import DDIMScheduler, DDPMScheduler
    from safetensors.torch import save_file

    model = _AnalyticModel()
    cond = torch.linspace(-1, 1, 8).reshape(1, 2, 2, 2)
    arrays = {}
    for case in SCHEDULE_CASES:
        sched, beta, pred, zts, mode = case
        cls = DDPMScheduler if sched == "ddpm" else DDIMScheduler
        s = cls(num_train_timesteps=1000, beta_schedule=beta, prediction_type=pred, zero_terminal_snr=zts,
                thresholding=True, clip_sample=False)  # fmt: skip
        g = torch.Generator().manual_seed(7)
        image = torch.randn((1, model.in_channels, 4, 4), generator=g)
        s.set_timesteps(3, mode=mode)
        for t in s.timesteps:
            image = s.step(model(image, t, cond).float(), t, image, generator=g).prev_sample
        arrays[case_key(case)] = image.contiguous()
        arrays[case_key(case) + "|timesteps"] = s.timesteps.clone().contiguous()
        arrays[f"alphas_cumprod|{beta}|zts={int(zts)}"] = s.alphas_cumprod.clone().contiguous()
    save_file(arrays, str(out / "divae_schedulers.safetensors"))
    print(f"schedulers: {len(SCHEDULE_CASES)} cases -> {out / 'divae_schedulers.safetensors'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="the published sizes (not committed)")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default {OUT})")
    parser.add_argument("--only", nargs="*", default=None, help="tokenizer names to write (default: all)")
    args = parser.parse_args(argv)
    import shim

    shim.install()
    import torch

    torch.set_num_threads(1)
    out = args.out or OUT
    if args.full and args.out is None:
        parser.error("--full needs --out (full-size references are not committed)")
    for name, full in TOKENIZERS.items():
        if args.only and name not in args.only:
            continue
        channels = full["n_channels"]
        if args.full:
            write(name, dict(full), (1, channels, 224, 224), out)
        else:
            over = {"encoder": TINY_VIT, "decoder": TINY_UVIT if "uvit" in full["dec_type"] else TINY_UNET}
            write(name, {**full, **CI_TOP, "fourm_size_overrides": over}, (2, channels, 32, 16), out)
    if not args.full and not args.only:
        write_schedulers(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
