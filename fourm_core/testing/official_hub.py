"""A local Hugging Face hub cache holding official-layout 4M models and ml-4m tokenizers with random weights.

What the published ``EPFL-VILAB/4M-21_B`` and ``EPFL-VILAB/4M_tokenizers_*`` repos look like to fourm, without the
network and without the real weights: :func:`build_official_hub_cache` writes a model repo (ml-4m's flat
``config.json`` with 4M-21's full key set + ``model.safetensors``) and the tokenizer repos its targets need
(``config.json`` with ml-4m's constructor keywords + ``model.safetensors``) into a cache folder laid out exactly as
``huggingface_hub`` lays one out (``models--owner--name/{blobs,refs,snapshots}``, content-addressed blobs, relative
symlinks, a ``refs/main`` file). Point ``HF_HUB_CACHE`` at it and set ``HF_HUB_OFFLINE=1``, and
``fourm generate --model EPFL-VILAB/4M-21_B --tokenizers official ...``, ``fourm_core.FourM.from_pretrained`` and
``snapshot_download(..., local_files_only=True)`` find everything there.

Useful to plugin authors: a plugin that declares official assets (``ModalitySpec.official.hub_id``) can test its
``tokenizers="official"`` path end to end on a CPU in seconds::

    from fourm_core.testing.official_hub import build_official_hub_cache
    built = build_official_hub_cache(tmp_path / "hub", tokenizers=("depth", "semseg"))
    monkeypatch.setenv("HF_HUB_CACHE", str(built["cache"])); monkeypatch.setenv("HF_HUB_OFFLINE", "1")

Sizes: ``size="tiny"`` (the default) keeps every published top-level setting (classes, channels, codebooks, image
sizes, schedules) and shrinks the sub-modules with the ``fourm_size_overrides`` key of the reduced CI fixtures (see
:mod:`fourm_core.tokenizers.official.loader`), and the model to width 16 with one block each side. ``size="full"``
writes the published architectures (4M-21 B: 842.6M parameters, 3.4 GB; the tokenizers ViT-B / U-Net / MLP at their
released sizes), for a smoke run at real cost (``tools/official_smoke.py``).

Weights are the modules' own random initialisation under ``torch.manual_seed(seed)``, except that parameters that
initialise to one constant (the output layers ml-4m starts at zero) get small deterministic values from
:mod:`fourm_core.testing.deterministic`, so decodings are not constant pictures. They are not ml-4m's numbers: the
equality with ml-4m is tested on the fixtures under ``tests/fixtures/ml4m``.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "MODEL_SIZES",
    "TOKENIZER_CONFIGS",
    "TOKENIZER_REPO_PREFIX",
    "add_snapshot",
    "build_official_hub_cache",
    "official_model_config",
    "tokenizer_config",
    "tokenizer_files",
    "model_files",
    "official_domains",
]

#: the commit every snapshot written here is filed under (any 40 hex digits; ``refs/main`` names it)
DEFAULT_COMMIT = "0" * 39 + "1"
TOKENIZER_REPO_PREFIX = "EPFL-VILAB/4M_tokenizers_"


def official_domains(registry: Any = None, preset: str = "paper") -> tuple[list[str], list[str]]:
    """The input and target keys of an official model over the installed plugins: every model key whose plugins
    all declare official assets (``spec.official``), an input unless its plugins are target-only, a target where a
    plugin can be one. With the built-in plugins this is 4M-21's set: 19 inputs, 17 targets (RGB pixels and T5
    embeddings are inputs only). Taken from the registry, so the core names no modality."""
    if registry is None:
        from fourm_core.registry import Registry

        registry = Registry()
    domains_in: list[str] = []
    domains_out: list[str] = []
    for key, members in registry.model_keys(preset).items():
        if not all(m.spec.official for m in members):
            continue
        if any(not m.spec.target_only for m in members):
            domains_in.append(key)
        if any(m.spec.is_target for m in members):
            domains_out.append(key)
    return domains_in, domains_out


#: ``fm_*_swiglu_nobias`` sizes (ml-4m's ``@register_model`` table) and the tiny CI width
MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"dim": 16, "encoder_depth": 1, "decoder_depth": 1, "num_heads": 2},
    "B": {"dim": 768, "encoder_depth": 12, "decoder_depth": 12, "num_heads": 12},
    "L": {"dim": 1024, "encoder_depth": 24, "decoder_depth": 24, "num_heads": 16},
    "XL": {"dim": 2048, "encoder_depth": 24, "decoder_depth": 24, "num_heads": 32},
}

# ------------------------------------------------------------------------------------------- tokenizer configs
# The published constructor keywords, as ml-4m's ``get_image_tokenizer`` passes them (reference sections 5.3 and
# 9.4). tests/test_official_generate.py checks them against tools/ml4m_fixtures/make_{vqvae,divae}.py.
_QUANT = {
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
_VIT = {"enc_type": "vit_b_enc", "dec_type": "vit_b_dec", "post_mlp": True, **_QUANT}
_MULTIRES = {"image_size": 448, "image_size_enc": 224}
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
_DIVAE = {
    "enc_type": "vit_b_enc",
    "dec_type": "unet_patched",
    "post_mlp": True,
    "patch_size": 16,
    **_QUANT,
    **_MULTIRES,
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

#: repo suffix (after ``EPFL-VILAB/4M_tokenizers_``) -> published constructor keywords
TOKENIZER_CONFIGS: dict[str, dict[str, Any]] = {
    "rgb_16k_224-448": {**_DIVAE, "n_channels": 3, "codebook_size": 16384, "clip_sample": True},
    "depth_8k_224-448": {**_DIVAE, "n_channels": 1, "codebook_size": 8192, "clip_sample": False},
    "normal_8k_224-448": {**_DIVAE, "n_channels": 3, "codebook_size": 8192, "clip_sample": True},
    # the released file's size points to a UViT-B decoder rather than the U-Net its training yaml names
    "edge_8k_224-512": {
        **_DIVAE,
        "n_channels": 1,
        "codebook_size": 8192,
        "clip_sample": False,
        "image_size": 512,
        "dec_type": "uvit_b_p4_f16",
        "dec_transformer_dropout": 0.2,
    },
    "semseg_4k_224-448": {
        **_VIT,
        **_MULTIRES,
        "n_channels": 64,
        "n_labels": 134,
        "patch_size": 16,
        "codebook_size": 4096,
    },
    "CLIP-B16_8k_224-448": {
        **_VIT,
        **_MULTIRES,
        "n_channels": 512,
        "patch_proj": False,
        "patch_size": 16,
        "codebook_size": 8192,
    },
    "DINOv2-B14_8k_224-448": {
        **_VIT,
        **_MULTIRES,
        "n_channels": 768,
        "patch_proj": False,
        "patch_size": 14,
        "codebook_size": 8192,
    },
    "ImageBind-H14_8k_224-448": {
        **_VIT,
        **_MULTIRES,
        "n_channels": 1280,
        "patch_proj": False,
        "patch_size": 14,
        "codebook_size": 8192,
    },
    "DINOv2-B14-global_8k_16_224": {
        **_BMLP,
        "image_size": 224,
        "patch_size": 14,
        "n_channels": 768,
        "codebook_size": 8192,
        "num_codebooks": 16,
    },
    "ImageBind-H14-global_8k_16_224": {
        **_BMLP,
        "image_size": 224,
        "patch_size": 14,
        "n_channels": 1280,
        "codebook_size": 8192,
        "num_codebooks": 16,
    },
    "sam-instance_1k_64": {
        **_VIT,
        "post_mlp": False,
        "image_size": 64,
        "n_channels": 1,
        "patch_size": 16,
        "out_conv": True,
        "codebook_size": 1024,
        "latent_dim": 1024,
    },
    "human-poses_1k_8": {
        **_BMLP,
        "image_size": 224,
        "patch_size": 16,
        "n_channels": 207,
        "codebook_size": 1024,
        "num_codebooks": 8,
    },
}

# tiny sub-module sizes: the reduced CI fixtures' ``fourm_size_overrides`` (tools/ml4m_fixtures)
_TINY_VIT_ENC = dict(dim_tokens=32, depth=1, num_heads=2)
_TINY_VIT_DEC = dict(dim_tokens=24, depth=1, num_heads=2)
_TINY_MLP_ENC = {"block_dims": [[64, 32], [64, 32]]}
_TINY_MLP_DEC = {"block_dims": [[48, 16]]}
_TINY_UNET = {"model_channels": 32, "num_res_blocks": 1, "channel_mult": [1, 2], "attention_resolutions": [2]}
_TINY_UVIT = {
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "mid_layers": 1,
    "mid_num_heads": 2,
    "mid_dim": 32,
    "mid_hw_posemb": 4,
}


def tokenizer_config(suffix: str, size: str = "tiny") -> dict[str, Any]:
    """The ``config.json`` of tokenizer repo ``EPFL-VILAB/4M_tokenizers_<suffix>``: the published keywords, and at
    ``size="tiny"`` a ``fourm_size_overrides`` entry shrinking the encoder and decoder (and a 64-wide Memcodes /
    SAM latent instead of 1024)."""
    if suffix not in TOKENIZER_CONFIGS:
        known = ", ".join(sorted(TOKENIZER_CONFIGS))
        raise KeyError(f"no published tokenizer config {suffix!r} (known: {known})")
    config = copy.deepcopy(TOKENIZER_CONFIGS[suffix])
    if size == "full":
        return config
    if size != "tiny":
        raise ValueError(f"size must be 'tiny' or 'full', got {size!r}")
    dec_type = str(config["dec_type"])
    if "MLP" in str(config["enc_type"]):
        encoder, decoder = _TINY_MLP_ENC, _TINY_MLP_DEC
    else:
        encoder = _TINY_VIT_ENC
        decoders = {"uvit": _TINY_UVIT, "unet": _TINY_UNET}
        decoder = decoders.get(dec_type[:4], _TINY_VIT_DEC)
    if int(config.get("latent_dim", 0)) > 64:
        config["latent_dim"] = 64
    config["fourm_size_overrides"] = {"encoder": copy.deepcopy(encoder), "decoder": copy.deepcopy(decoder)}
    return config


def official_model_config(
    size: str = "tiny",
    domains_in: Iterable[str] | None = None,
    domains_out: Iterable[str] | None = None,
    registry: Any = None,
    **fields: Any,
) -> dict[str, Any]:
    """The ``config.json`` of an official 4M model: ``FM(config)``'s flat keywords with the swiglu_nobias recipe of
    the released 4M-21 models at ``size`` (``tiny``, ``B``, ``L``, ``XL``), 4M-21's key set unless other
    ``domains_in`` / ``domains_out`` are given; ``fields`` replace any entry."""
    if size not in MODEL_SIZES:
        raise ValueError(f"size must be one of {', '.join(MODEL_SIZES)}, got {size!r}")
    if domains_in is None or domains_out is None:
        default_in, default_out = official_domains(registry)
        domains_in = default_in if domains_in is None else domains_in
        domains_out = default_out if domains_out is None else domains_out
    config: dict[str, Any] = {
        "domains_in": list(domains_in),
        "domains_out": list(domains_out),
        "image_size": 224,
        "patch_size": 16,
        **MODEL_SIZES[size],
        "mlp_ratio": 4.0,
        "qkv_bias": False,
        "proj_bias": False,
        "mlp_bias": False,
        "norm_bias": False,
        "act_layer": "SiLU",
        "gated_mlp": True,
        "qk_norm": False,
        "decoder_causal_mask": False,
        "decoder_sep_mask": True,
        "num_register_tokens": 0,
        "share_modality_embeddings": False,
    }
    config.update(fields)
    return config


# ------------------------------------------------------------------------------------------- files
def _perturb_constant_parameters(module: Any, seed: int) -> None:
    """Parameters initialised to one constant (ml-4m's zero output layers) get small deterministic values, so that
    a random tokenizer does not decode every token to the same flat picture."""
    import torch

    from fourm_core.testing.deterministic import tensor_values

    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.numel() > 1 and bool((param == param.reshape(-1)[0]).all()):
                values = tensor_values(name, tuple(param.shape), seed, scale=0.02)
                param.copy_(torch.from_numpy(values).to(param.dtype))


def _write_repo(folder: Path, config: Mapping[str, Any], module: Any) -> dict[str, Path]:
    """``config.json`` + ``model.safetensors`` of ``module`` in ``folder``. Only tensors that share storage with an
    earlier one are cloned (safetensors refuses shared storage; a strict load wants every key), so a 3.4 GB model
    is written without a second copy in memory."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    seen: set[int] = set()
    state = {}
    for key, value in module.state_dict().items():
        value = value.detach().contiguous()
        pointer = value.untyped_storage().data_ptr()
        state[key] = value.clone() if pointer in seen else value
        seen.add(pointer)
    (folder / "config.json").write_text(json.dumps(dict(config), indent=2))
    save_file(state, str(folder / "model.safetensors"))
    return {"config.json": folder / "config.json", "model.safetensors": folder / "model.safetensors"}


def tokenizer_files(suffix: str, folder: str | os.PathLike[str], size: str = "tiny", seed: int = 0) -> dict[str, Path]:
    """Write ``config.json`` + ``model.safetensors`` of tokenizer repo ``<suffix>`` into ``folder``: built by
    fourm's official classes (the loader's class choice: ``DiVAE`` or ``VQVAE``), randomly initialised."""
    import torch

    from fourm_core.tokenizers.official.loader import OFFICIAL_CLASSES, official_class_name

    config = tokenizer_config(suffix, size)
    torch.manual_seed(seed)
    module_name, _, attr = OFFICIAL_CLASSES[official_class_name(config)].partition(":")  # the loader's class table
    cls: Any = getattr(importlib.import_module(module_name), attr)
    module = cls.from_config(dict(config), source=f"{TOKENIZER_REPO_PREFIX}{suffix}")
    _perturb_constant_parameters(module, seed)
    return _write_repo(Path(folder), config, module)


def model_files(
    config: Mapping[str, Any], folder: str | os.PathLike[str], registry: Any = None, seed: int = 0
) -> dict[str, Path]:
    """Write ``config.json`` + ``model.safetensors`` of an official-layout model into ``folder``: fourm's network
    for the config (the key table from ``registry``'s plugins), randomly initialised under ``seed``."""
    import torch

    from fourm_core.model.network import FourMNetwork
    from fourm_core.model.official import official_config

    torch.manual_seed(seed)
    network = FourMNetwork(official_config(dict(config), registry))
    return _write_repo(Path(folder), config, network)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def add_snapshot(
    cache: str | os.PathLike[str],
    repo_id: str,
    files: Mapping[str, bytes | Path],
    commit: str = DEFAULT_COMMIT,
    refs: Iterable[str] = ("main",),
) -> Path:
    """One commit of model repo ``repo_id`` in hub cache ``cache``, as ``huggingface_hub`` stores it: blobs named by
    the SHA-256 of their bytes (the hub's name for LFS files), the snapshot's files as relative symlinks to them, one
    file per ref naming the commit. ``files``: name -> bytes, or a file that is moved into the cache. Returns the
    snapshot folder."""
    root = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if isinstance(data, Path):
            blob = root / "blobs" / _sha256(data)
            shutil.move(str(data), str(blob))
        else:
            blob = root / "blobs" / hashlib.sha256(data).hexdigest()
            blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (root / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)  # "pr/2" as the hub files it
        (root / "refs" / ref).write_text(commit)
    return snapshot


def _tokenizer_suffix(name: str, registry: Any) -> str:
    """A modality name (its plugin's declared hub id), a hub id or a repo suffix to the repo suffix."""
    if name in TOKENIZER_CONFIGS:
        return name
    if name.startswith(TOKENIZER_REPO_PREFIX) and name[len(TOKENIZER_REPO_PREFIX) :] in TOKENIZER_CONFIGS:
        return name[len(TOKENIZER_REPO_PREFIX) :]
    if registry is None:
        from fourm_core.registry import Registry

        registry = Registry()
    official = registry.get(name).spec.official
    hub_id = getattr(official, "hub_id", None)
    if not hub_id or not str(hub_id).startswith(TOKENIZER_REPO_PREFIX):
        raise ValueError(f"modality {name!r} declares no official tokenizer repo (it needs none)")
    return str(hub_id)[len(TOKENIZER_REPO_PREFIX) :]


def build_official_hub_cache(
    cache_dir: str | os.PathLike[str],
    *,
    model_repo: str | None = "EPFL-VILAB/4M-21_B",
    model_config: Mapping[str, Any] | None = None,
    tokenizers: Iterable[str] | None = None,
    size: str = "tiny",
    seed: int = 0,
    registry: Any = None,
) -> dict[str, Any]:
    """Write an official-layout model repo and tokenizer repos into hub cache ``cache_dir`` (see the module
    docstring); returns ``{"cache": Path, "model": snapshot folder or None, "tokenizers": {hub id: snapshot}}``.

    ``model_repo``: the repo id to file the model under (``None``: no model); ``model_config``: its ``config.json``
    (default :func:`official_model_config` at ``size``: ``tiny``, else ``B``); ``tokenizers``: modality names
    (through their plugins' declared hub ids), hub ids or repo suffixes, each repo written once (``None``: every
    official tokenizer the installed plugins declare);
    ``size``: ``tiny`` or ``full`` for the tokenizers, ``tiny`` or ``B``/``L``/``XL`` (``full`` = ``B``) for the
    default model config."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"cache": cache, "model": None, "tokenizers": {}}
    tok_size = "tiny" if size == "tiny" else "full"
    if tokenizers is None:
        from fourm_core.registry import Registry

        registry = registry if registry is not None else Registry()
        declared = (m.spec.official for m in registry.modalities())
        tokenizers = sorted({a.hub_id for a in declared if a is not None and a.hub_id})
    with tempfile.TemporaryDirectory(dir=cache, prefix=".staging-") as staging:
        for name in tokenizers:
            suffix = _tokenizer_suffix(name, registry)
            hub_id = f"{TOKENIZER_REPO_PREFIX}{suffix}"
            if hub_id not in out["tokenizers"]:
                files = tokenizer_files(suffix, Path(staging) / suffix, tok_size, seed)
                out["tokenizers"][hub_id] = add_snapshot(cache, hub_id, files)
        if model_repo is not None:
            model_size = "tiny" if size == "tiny" else ("B" if size == "full" else size)
            default = model_config is None
            config = official_model_config(model_size, registry=registry) if default else dict(model_config or {})
            files = model_files(config, Path(staging) / "model", registry, seed)
            out["model"] = add_snapshot(cache, model_repo, files)
    return out
