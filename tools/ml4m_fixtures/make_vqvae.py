"""Reference outputs of ml-4m's ``VQVAE`` for the eight released VQ-VAE tokenizers, for fourm's official-tokenizer test.

For each released tokenizer (``EPFL-VILAB/4M_tokenizers_<name>``) this builds ml-4m's own ``VQVAE`` with the
constructor config ml-4m derives for it (its yaml under ``cfgs/default/tokenization/vqvae/`` after the renames of
``fourm/vq/__init__.py::get_image_tokenizer``, with the corrections of the reference, section 9.4: CLIP works on 512
channels with ``patch_proj`` False, the global tokenizers have 16 codebooks, semseg has 134 labels and a 64-channel
class embedding, poses have 207 channels, SAM works on 64 px masks), replaces every floating parameter and buffer
with :mod:`fourm_core.testing.deterministic` values (codebooks, cluster sizes and the frozen sin-cos ``pos_emb``
included, so that the loaded values, not rebuilt ones, are what is tested; only the constant ``initted`` flag is kept
as built), runs it and writes, under ``tests/fixtures/ml4m/tokenizers/<name>/``:

* ``config.json``: the constructor keywords as the hub's ``config.json`` holds them; the CI fixtures reduce a few
  top-level numbers (``n_labels``, ``latent_dim``) and carry ``fourm_size_overrides`` (ViT width/depth/heads,
  bottleneck-MLP ``block_dims``), which this script applies on ml-4m's side by wrapping its builders;
* ``layout.json``: state-dict names in order -> shape, dtype, SHA-256 of the value used (``null`` when kept as built,
  with the value), and the scale it was generated with;
* ``reference.safetensors``: the input, ml-4m's tokens, ``quant`` (when small), ``decoded`` = ``decode_tokens(tokens)``
  and ``code_loss``; its metadata records that ml-4m's ``autoencode(x)`` and ``forward(x)[0]`` equal ``decoded``
  bit for bit (asserted here), so one array serves all three.

Run in the side environment (see README.md)::

    ML4M_SRC=../side/ml4m-src ../side/venv/bin/python tools/ml4m_fixtures/make_vqvae.py
    ML4M_SRC=../side/ml4m-src ../side/venv/bin/python tools/ml4m_fixtures/make_vqvae.py --full --out /tmp/full_vq

``--full`` builds the published sizes (ViT-B, BottleneckMLP B_6-Wi_1024) and writes the same files per tokenizer into
``--out``; compare with ``.venv/bin/python tests/test_official_vqvae.py --compare DIR`` (nothing of it is committed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT = REPO / "tests" / "fixtures" / "ml4m" / "tokenizers"
SEED = 0

_VIT = {
    "enc_type": "vit_b_enc",
    "dec_type": "vit_b_dec",
    "post_mlp": True,
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
}
_BMLP = {
    "enc_type": "BottleneckMLP/B_6-Wi_1024",
    "dec_type": "BottleneckMLP/B_6-Wi_1024",
    "quant_type": "memcodes",
    "latent_dim": 1024,
    "norm_codes": True,
    "commitment_weight": 1.0,
    "sync_codebook": False,
    "undo_std": False,
}
#: the 224-448 fine-tunes: decoder (and targets) up to 448 px, encoder position embedding as trained at 224
_MULTIRES = {"image_size": 448, "image_size_enc": 224}

#: name -> (full config, CI changes to the top-level config, CI fourm_size_overrides, CI input, full input)
#: inputs: ("labels", n, shape) class ids, ("normal", shape) features, ("mask", shape) binary masks
TINY_VIT = {"dim_tokens": 32, "depth": 1, "num_heads": 2}
TINY_VIT_DEC = {"dim_tokens": 24, "depth": 1, "num_heads": 2}
TINY_MLP_ENC = {"block_dims": [[64, 32], [64, 32]]}
TINY_MLP_DEC = {"block_dims": [[48, 16]]}
TOKENIZERS: dict[str, tuple[dict, dict, dict, tuple, tuple]] = {
    "semseg_4k_224-448": (
        {**_VIT, **_MULTIRES, "n_channels": 64, "n_labels": 134, "patch_size": 16, "codebook_size": 4096},
        {"n_labels": 6},
        {"encoder": TINY_VIT, "decoder": TINY_VIT_DEC},
        ("labels", (2, 32, 48)),
        ("labels", (1, 224, 224)),
    ),
    "CLIP-B16_8k_224-448": (
        {**_VIT, **_MULTIRES, "n_channels": 512, "patch_proj": False, "patch_size": 16, "codebook_size": 8192},
        {},
        {"encoder": TINY_VIT, "decoder": TINY_VIT_DEC},
        ("normal", (2, 512, 2, 3)),
        ("normal", (1, 512, 14, 14)),
    ),
    "DINOv2-B14_8k_224-448": (
        {**_VIT, **_MULTIRES, "n_channels": 768, "patch_proj": False, "patch_size": 14, "codebook_size": 8192},
        {},
        {"encoder": TINY_VIT, "decoder": TINY_VIT_DEC},
        ("normal", (2, 768, 3, 2)),
        ("normal", (1, 768, 16, 16)),
    ),
    "ImageBind-H14_8k_224-448": (
        {**_VIT, **_MULTIRES, "n_channels": 1280, "patch_proj": False, "patch_size": 14, "codebook_size": 8192},
        {},
        {"encoder": TINY_VIT, "decoder": TINY_VIT_DEC},
        ("normal", (1, 1280, 2, 3)),
        ("normal", (1, 1280, 16, 16)),
    ),
    "DINOv2-B14-global_8k_16_224": (
        {**_BMLP, "image_size": 224, "patch_size": 14, "n_channels": 768, "codebook_size": 8192, "num_codebooks": 16},
        {"latent_dim": 64},
        {"encoder": TINY_MLP_ENC, "decoder": TINY_MLP_DEC},
        ("normal", (4, 768, 1, 1)),
        ("normal", (4, 768, 1, 1)),
    ),
    "ImageBind-H14-global_8k_16_224": (
        {**_BMLP, "image_size": 224, "patch_size": 14, "n_channels": 1280, "codebook_size": 8192, "num_codebooks": 16},
        {"latent_dim": 64},
        {"encoder": TINY_MLP_ENC, "decoder": TINY_MLP_DEC},
        ("normal", (4, 1280, 1, 1)),
        ("normal", (4, 1280, 1, 1)),
    ),
    "sam-instance_1k_64": (
        {
            **_VIT,
            "post_mlp": False,
            "image_size": 64,
            "n_channels": 1,
            "patch_size": 16,
            "out_conv": True,
            "codebook_size": 1024,
            "latent_dim": 1024,
        },
        {"latent_dim": 64},
        {"encoder": TINY_VIT, "decoder": TINY_VIT_DEC},
        ("mask", (2, 1, 64, 64)),
        ("mask", (4, 1, 64, 64)),
    ),
    "human-poses_1k_8": (
        {**_BMLP, "image_size": 224, "patch_size": 16, "n_channels": 207, "codebook_size": 1024, "num_codebooks": 8},
        {"latent_dim": 64},
        {"encoder": TINY_MLP_ENC, "decoder": TINY_MLP_DEC},
        ("normal", (4, 207, 1, 1)),
        ("normal", (4, 207, 1, 1)),
    ),
}
#: store ``quant`` in the reference when it has at most this many values
QUANT_STORE_MAX = 8192


def _deterministic():
    spec = importlib.util.spec_from_file_location("fourm_deterministic", REPO / "fourm_core/testing/deterministic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


det = _deterministic()


def weight_scale(name: str, shape: tuple[int, ...]) -> float:
    """Keeps activations O(1) at any width: weight matrices and convolutions uniform with variance 1/fan_in
    (half-width sqrt(3 / fan_in)), Memcodes projections likewise over their input width, biases 0.1, everything
    else (norms, layer scales, codebooks, class embeddings, position embeddings, cluster sizes) 1. Not ml-4m's
    init: only the outputs' spread matters, and no tensor is left at a constant that could hide a bug."""
    if name.endswith(".bias"):
        return 0.1
    if name.endswith(("to_k.weight", "to_v.weight")):
        return float(np.sqrt(3.0 / shape[1]))
    if name.endswith(".weight") and len(shape) >= 2 and "cls_emb" not in name:
        return float(np.sqrt(3.0 / int(np.prod(shape[1:]))))
    return 1.0


def kept_as_built(name: str) -> bool:
    """The codebook's ``initted`` flag: a constant 1 in every trained checkpoint, not a learned value."""
    return name.endswith("_codebook.initted")


def patch_builders(overrides: dict) -> None:
    """Make ml-4m's named builders honour ``fourm_size_overrides``: same classes, smaller constructor keywords."""
    import fourm.vq.models.vit_models as vit_models
    import fourm.vq.vqvae as vqvae
    from fourm.vq.models.mlp_models import BottleneckMLP, build_mlp

    originals = getattr(patch_builders, "_originals", None)
    if originals is None:
        originals = {n: getattr(vit_models, n) for n in dir(vit_models) if n.startswith("vit_")}
        originals["build_mlp"] = build_mlp
        patch_builders._originals = originals  # type: ignore[attr-defined]
    sizes = {"vit_s": (512, 8, 8), "vit_b": (768, 12, 12), "vit_l": (1024, 24, 16)}
    for name, fn in originals.items():
        if name == "build_mlp":
            continue
        role = "encoder" if name.endswith("_enc") else "decoder"
        extra = overrides.get(role)
        if not extra:
            setattr(vit_models, name, fn)
            continue
        cls = vit_models.ViTEncoder if role == "encoder" else vit_models.ViTDecoder
        dim, depth, heads = sizes[name.rsplit("_", 1)[0]]

        def builder(*, _cls=cls, _extra=extra, _base=(dim, depth, heads), **kwargs):
            kw = {"dim_tokens": _base[0], "depth": _base[1], "num_heads": _base[2], "mlp_ratio": 4, "qkv_bias": True}
            kw.update(kwargs)
            kw.update(_extra)
            return _cls(**kw)

        setattr(vit_models, name, builder)

    def mlp_builder(model_id, dim_in=None, dim_out=None, **kwargs):
        role = "encoder" if dim_in is not None else "decoder"
        extra = overrides.get(role)
        if not extra:
            return originals["build_mlp"](model_id=model_id, dim_in=dim_in, dim_out=dim_out, **kwargs)
        thin = extra["block_dims"][0][1]
        return BottleneckMLP(dim_in=dim_in or thin, dim_out=dim_out or thin, block_dims=extra["block_dims"])

    vqvae.build_mlp = mlp_builder


def build(config: dict):
    """ml-4m's VQVAE for ``config`` with deterministic weights, and the layout of its state dict."""
    import torch
    from fourm.vq.vqvae import VQVAE

    kwargs = dict(config)
    patch_builders(kwargs.pop("fourm_size_overrides", {}))
    torch.manual_seed(SEED)
    model = VQVAE(**kwargs).eval()
    layout: dict[str, dict] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        entry: dict = {"shape": list(tensor.shape), "dtype": str(tensor.dtype).replace("torch.", "")}
        if kept_as_built(name) or not tensor.is_floating_point():
            entry["sha256"] = None
            entry["value"] = tensor.detach().flatten().tolist()
        else:
            scale = weight_scale(name, tuple(tensor.shape))
            value = det.tensor_values(name, tuple(tensor.shape), SEED, scale)
            with torch.no_grad():
                tensor.copy_(torch.from_numpy(value))
            entry["sha256"] = det.digest(value)
            entry["scale"] = scale
        layout[name] = entry
    return model, layout


def make_input(spec: tuple, n_labels: int | None, seed: int):
    import torch

    rng = np.random.default_rng(seed)
    kind, shape = spec
    if kind == "labels":
        return torch.from_numpy(rng.integers(0, n_labels, size=shape, dtype=np.int64))
    if kind == "mask":
        return torch.from_numpy((rng.random(shape) > 0.5).astype(np.float32))
    return torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))


def write(name: str, config: dict, input_spec: tuple, out: Path) -> None:
    import torch
    from safetensors.torch import save_file

    model, layout = build(config)
    x = make_input(input_spec, config.get("n_labels"), seed=len(name))
    with torch.no_grad():
        quant, code_loss, tokens = model.encode(x)
        decoded = model.decode_tokens(tokens)
        auto = model.autoencode(x)
        fwd, fwd_loss = model(x)
    assert torch.equal(auto, decoded) and torch.equal(fwd, decoded), f"{name}: autoencode/forward differ from decode"
    arrays = {
        "input": x.contiguous(),
        "tokens": tokens.contiguous(),
        "decoded": decoded.contiguous(),
        "code_loss": fwd_loss.reshape(-1).contiguous(),
    }
    if quant.numel() <= QUANT_STORE_MAX:
        arrays["quant"] = quant.contiguous()
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "layout.json").write_text(json.dumps(layout, indent=1) + "\n")
    meta = {"autoencode": "equals decoded", "forward": "equals decoded", "seed": str(SEED)}
    save_file(arrays, str(folder / "reference.safetensors"), metadata=meta)
    distinct = int(torch.unique(tokens).numel())
    print(f"{name}: tokens {tuple(tokens.shape)} ({distinct} distinct), decoded {tuple(decoded.shape)} -> {folder}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="the published sizes (not committed)")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default {OUT})")
    parser.add_argument("--only", nargs="*", default=None, help="tokenizer names to write (default: all)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import shim

    shim.install()
    import torch

    torch.set_num_threads(1)
    out = args.out or OUT
    if args.full and args.out is None:
        parser.error("--full needs --out (full-size references are not committed)")
    for name, (full, ci_top, ci_over, ci_input, full_input) in TOKENIZERS.items():
        if args.only and name not in args.only:
            continue
        if args.full:
            write(name, dict(full), full_input, out)
        else:
            write(name, {**full, **ci_top, "fourm_size_overrides": ci_over}, ci_input, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
