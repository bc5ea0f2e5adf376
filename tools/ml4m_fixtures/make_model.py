"""Reference outputs of ml-4m's ``FM`` (the published 4M model class) for fourm's official-model test.

Builds ``FM(config)`` with the full 4M-21 key set (19 inputs, 17 targets) at a tiny width, replaces every learned
tensor with :mod:`fourm_core.testing.deterministic` values, builds a fixed batch by hand (pixels, image and global
tokens, sequences with input and target parts, T5 embeddings; masks with both inputs and targets, one target key
left without targets), runs ``forward(..., loss_type='mod')`` and ``forward(..., return_logits=True)`` with Python's
``random`` seeded (ml-4m shuffles the decoder modalities with ``random.sample``) and writes per config, under
``tests/fixtures/ml4m/model/<name>/``:

* ``config.json``: the ``FM(config)`` kwargs exactly as the hub's ``config.json`` holds them;
* ``layout.json``: state-dict names in order -> shape, dtype, the SHA-256 of the regenerated value (``null`` for
  buffers kept as ml-4m built them: sin-cos position tables, the zero ``bias`` of no-bias LayerNorms, whose values
  are stored when small), the scale used, and ``same_as`` for the decoder ``mod_emb`` entries that are the encoder's
  tensor (ml-4m shares them);
* ``inputs.json``: the float inputs too big to store (pixels, T5 embeddings) as regeneration recipes with digests;
* ``reference.safetensors``: the integer inputs and masks, the loss, the per-key losses and, per target key, the
  log-sum-exp of its logits over the vocabulary at every decoder position plus the first logits columns.

Run in the side environment (see README.md)::

    ML4M_SRC=../side/ml4m-src ../side/venv/bin/python tools/ml4m_fixtures/make_model.py
    ML4M_SRC=../side/ml4m-src ../side/venv/bin/python tools/ml4m_fixtures/make_model.py --full --out /tmp/full

``--full`` builds 4M-21 B at its real size (``fm_base_12e_12d_swiglu_nobias``) and writes the same files (the
layout lists every state-dict name and shape ml-4m builds) into ``--out/4M-21_B``; compare with
``.venv/bin/python tests/test_official_model.py --compare DIR`` (nothing of it is committed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT = REPO / "tests" / "fixtures" / "ml4m" / "model"

#: 4M-21's model-facing keys (ml-4m reference 1.2: the cc12m block of the 4M-21 data config), in its order.
DOMAINS_IN = [
    "caption",
    "t5_caption",
    "det",
    "metadata",
    "rgb@224",
    "tok_rgb@224",
    "tok_normal@224",
    "tok_depth@224",
    "tok_semseg@224",
    "tok_clip@224",
    "human_poses",
    "tok_dinov2@224",
    "tok_dinov2_global",
    "tok_imagebind@224",
    "tok_imagebind_global",
    "tok_sam_edge@224",
    "tok_canny_edge@224",
    "color_palette",
    "sam_instance",
]
DOMAINS_OUT = [k for k in DOMAINS_IN if k not in ("rgb@224", "t5_caption")]
#: The target key the batch leaves without targets (ml-4m still counts it in the 'mod' loss's denominator).
NO_TARGETS = "tok_clip@224"

SWIGLU = {
    "qkv_bias": False,
    "proj_bias": False,
    "mlp_bias": False,
    "norm_bias": False,
    "act_layer": "SiLU",
    "gated_mlp": True,
}
GELU = {
    "qkv_bias": True,
    "proj_bias": True,
    "mlp_bias": True,
    "norm_bias": True,
    "act_layer": "GELU",
    "gated_mlp": False,
}
COMMON = {"domains_in": DOMAINS_IN, "domains_out": DOMAINS_OUT, "image_size": 224, "patch_size": 16, "mlp_ratio": 4.0}
#: name -> (FM config, batch size, num_encoder_tokens, num_decoder_tokens)
CONFIGS: dict[str, tuple[dict, int, int, int]] = {
    "swiglu_nobias": (
        {**COMMON, "dim": 32, "encoder_depth": 2, "decoder_depth": 2, "num_heads": 4, **SWIGLU, "qk_norm": False},
        2,
        128,
        80,
    ),
    "gelu": (
        {**COMMON, "dim": 16, "encoder_depth": 1, "decoder_depth": 1, "num_heads": 2, **GELU, "qk_norm": False},
        2,
        96,
        64,
    ),
    "qknorm_registers": (
        {
            **COMMON,
            "dim": 16,
            "encoder_depth": 1,
            "decoder_depth": 1,
            "num_heads": 2,
            **SWIGLU,
            "qk_norm": True,
            "num_register_tokens": 2,
        },
        2,
        112,
        72,
    ),
}
FULL = (
    {
        **COMMON,
        "dim": 768,
        "encoder_depth": 12,
        "decoder_depth": 12,
        "num_heads": 12,
        **SWIGLU,
        "qk_norm": False,
        "decoder_causal_mask": False,
        "decoder_sep_mask": True,
        "num_register_tokens": 0,
        "use_act_checkpoint": False,
        "share_modality_embeddings": True,
    },
    1,
    256,
    256,
)
SEQ_LEN = 24  # every text sequence: inputs at [0, k), targets at [SEQ_LEN // 2, SEQ_LEN // 2 + t)
T5_LEN = 10
T5_DIM = 4096
LOGIT_COLUMNS = 4
SEED = 0


def _deterministic():
    spec = importlib.util.spec_from_file_location("fourm_deterministic", REPO / "fourm_core/testing/deterministic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


det = _deterministic()


def weight_scale(name: str, shape: tuple[int, ...]) -> float:
    """A value range that keeps activations O(1) at any width: norms and embeddings 1, matrices ~ N(0, 1/fan_in)
    (uniform half-width sqrt(3 / fan_in)), biases 0.1. Not ml-4m's init; only the outputs' spread matters."""
    if len(shape) == 2 and not name.endswith("token_emb.weight"):
        return float(np.sqrt(3.0 / shape[1]))
    if name.endswith(".bias"):
        return 0.1
    return 1.0


def kept_as_built(name: str, module_buffers: set[str]) -> bool:
    """Buffers ml-4m computes rather than learns (sin-cos tables, zero no-bias LayerNorm biases)."""
    return name in module_buffers


def build_model(config: dict):
    import torch
    from fourm.models.fm import FM

    torch.manual_seed(SEED)
    model = FM(config=config).eval()
    buffers = {n for n, _ in model.named_buffers()}
    state = model.state_dict(keep_vars=True)
    shapes = {n: tuple(t.shape) for n, t in state.items()}
    # shared tensors (a key's decoder mod_emb is its encoder mod_emb): set once, under the first name
    first_name: dict[int, str] = {}
    layout: dict[str, dict] = {}
    for name, tensor in state.items():
        entry: dict = {"shape": list(tensor.shape), "dtype": str(tensor.dtype).replace("torch.", "")}
        if id(tensor) in first_name:
            entry["same_as"] = first_name[id(tensor)]
            entry["sha256"] = layout[first_name[id(tensor)]]["sha256"]
        elif kept_as_built(name, buffers) or not tensor.is_floating_point():
            entry["sha256"] = None
            if tensor.numel() <= 64:
                entry["value"] = tensor.detach().flatten().tolist()
        else:
            scale = weight_scale(name, shapes[name])
            value = det.tensor_values(name, shapes[name], SEED, scale)
            with torch.no_grad():
                tensor.copy_(torch.from_numpy(value))
            entry["sha256"] = det.digest(value)
            entry["scale"] = scale
        first_name.setdefault(id(tensor), name)
        layout[name] = entry
    return model, layout


def make_batch(model, batch: int, seed: int) -> tuple[dict, dict, dict]:
    """``(mod_dict tensors, stored arrays, generated float inputs)`` for every input and target key."""
    rng = np.random.default_rng(seed)
    info = model.modality_info
    stored: dict[str, np.ndarray] = {}
    generated: dict[str, dict] = {}
    keys = list(dict.fromkeys(DOMAINS_IN + DOMAINS_OUT))
    for key in keys:
        kind = info[key]["type"]
        is_in, is_out = key in model.encoder_embeddings, key in model.decoder_embeddings
        if kind == "img":
            emb = model.encoder_embeddings[key] if is_in else model.decoder_embeddings[key]
            n = emb.pos_emb.shape[1]
            input_mask = np.ones((batch, n), bool)
            target_mask = np.ones((batch, n), bool)
            attn = np.zeros((batch, n), np.int32)
            for b in range(batch):
                order = rng.permutation(n)
                k_in = int(rng.integers(0, 13)) if is_in else 0
                k_out = int(rng.integers(1, 9)) if is_out and key != NO_TARGETS else 0
                input_mask[b, order[:k_in]] = False
                targets = np.sort(order[k_in : k_in + k_out])
                target_mask[b, targets] = False
                if k_out:
                    attn[b, targets[0]] = k_out
            if "vocab_size" in info[key]:
                stored[f"{key}/tensor"] = rng.integers(0, info[key]["vocab_size"], (batch, n)).astype(np.int32)
            else:  # pixels: regenerated, not stored
                size = info[key]["input_size"]
                shape = (batch, 3, size, size)
                value = det.tensor_values(f"input/{key}", shape, seed, 2.0)
                generated[f"{key}/tensor"] = {"shape": list(shape), "scale": 2.0, "sha256": det.digest(value)}
        elif kind == "seq_emb":
            shape = (batch, T5_LEN, T5_DIM)
            value = det.tensor_values(f"input/{key}", shape, seed, 1.0)
            generated[f"{key}/tensor"] = {"shape": list(shape), "scale": 1.0, "sha256": det.digest(value)}
            input_mask = np.ones((batch, T5_LEN), bool)
            for b in range(batch):
                input_mask[b, : int(rng.integers(2, T5_LEN + 1))] = False
            target_mask = np.ones((batch, T5_LEN), bool)
            attn = np.zeros((batch, T5_LEN), np.int32)
        else:  # seq: input ids at the start, target ids from the middle, padding 0 elsewhere
            ids = np.zeros((batch, SEQ_LEN), np.int32)
            input_mask = np.ones((batch, SEQ_LEN), bool)
            target_mask = np.ones((batch, SEQ_LEN), bool)
            attn = np.zeros((batch, SEQ_LEN), np.int32)
            half = SEQ_LEN // 2
            for b in range(batch):
                k_in = int(rng.integers(0, half + 1)) if is_in else 0
                k_out = int(rng.integers(2, half + 1)) if is_out else 0
                ids[b, :k_in] = rng.integers(1, info[key]["vocab_size"], k_in)
                input_mask[b, :k_in] = False
                ids[b, half : half + k_out] = rng.integers(1, info[key]["vocab_size"], k_out)
                target_mask[b, half : half + k_out] = False
                attn[b, half : half + k_out] = 1
            stored[f"{key}/tensor"] = ids
        stored[f"{key}/input_mask"] = input_mask
        stored[f"{key}/target_mask"] = target_mask
        stored[f"{key}/decoder_attention_mask"] = attn
    return mod_dict_from(stored, generated, seed, keys), stored, generated


def mod_dict_from(stored: dict, generated: dict, seed: int, keys: list[str]) -> dict:
    """A fresh mod_dict (ml-4m's embeddings write into it, so every forward call gets its own)."""
    import torch

    out: dict[str, dict] = {k: {} for k in keys}
    for name, value in stored.items():
        key, field = name.rsplit("/", 1)
        t = torch.from_numpy(np.asarray(value))
        out[key][field] = t.bool() if value.dtype == bool else (t.long() if field == "tensor" else t.int())
    for name, recipe in generated.items():
        key, field = name.rsplit("/", 1)
        out[key][field] = torch.from_numpy(det.tensor_values(f"input/{key}", recipe["shape"], seed, recipe["scale"]))
    return out


def run(model, stored, generated, seed, n_enc, n_dec, keys) -> dict[str, np.ndarray]:
    """Loss, per-key losses and logit summaries; Python's ``random`` seeded with ``seed`` before each call, the
    generated inputs regenerated with ``seed + 1`` (as :func:`make_batch` made them)."""
    import torch

    results: dict[str, np.ndarray] = {}
    with torch.no_grad():
        random.seed(seed)
        loss, mod_loss = model(mod_dict_from(stored, generated, seed + 1, keys), n_enc, n_dec, loss_type="mod")
        results["loss"] = loss.reshape(1).float().numpy()
        for k, v in mod_loss.items():
            results[f"mod_loss/{k}"] = v.reshape(1).float().numpy()
        random.seed(seed)
        logits = model(mod_dict_from(stored, generated, seed + 1, keys), n_enc, n_dec, return_logits=True)
        for k, v in logits.items():
            results[f"logits_lse/{k}"] = torch.logsumexp(v.float(), dim=-1).numpy()
            results[f"logits_head/{k}"] = v[..., :LOGIT_COLUMNS].float().contiguous().numpy()
    return results


def write(name: str, config: dict, batch: int, n_enc: int, n_dec: int, out: Path, full: bool = False) -> None:
    from safetensors.numpy import save_file

    model, layout = build_model(config)
    keys = list(dict.fromkeys(DOMAINS_IN + DOMAINS_OUT))
    _, stored, generated = make_batch(model, batch, SEED + 1)
    results = run(model, stored, generated, SEED, n_enc, n_dec, keys)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "layout.json").write_text(json.dumps(layout, indent=1) + "\n")
    meta = {"seed": SEED, "num_encoder_tokens": n_enc, "num_decoder_tokens": n_dec, "keys": keys, "inputs": generated}
    (folder / "inputs.json").write_text(json.dumps(meta, indent=1) + "\n")
    arrays = {f"input/{k}": (v.astype(np.uint8) if v.dtype == bool else v) for k, v in stored.items()}
    arrays.update({f"output/{k}": v.astype(np.float32) for k, v in results.items()})
    save_file(arrays, str(folder / "reference.safetensors"))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{folder}: {len(layout)} state-dict keys, {n_params / 1e6:.1f}M parameters, loss {results['loss'][0]:.6f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="4M-21 B at its real size (not committed)")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the test fixtures)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import shim

    shim.install()
    import torch

    torch.set_num_threads(1)
    if args.full:
        if args.out is None:
            parser.error("--full needs --out DIR (full-size outputs are not committed)")
        config, batch, n_enc, n_dec = FULL
        write("4M-21_B", config, batch, n_enc, n_dec, args.out, full=True)
        return 0
    for name, (config, batch, n_enc, n_dec) in CONFIGS.items():
        write(name, config, batch, n_enc, n_dec, args.out or OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
