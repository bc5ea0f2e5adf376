"""FourMNetwork encoder-decoder, state-dict compatible with apple/ml-4m ``fourm/models/fm.py``.

Modalities are described by plain ``modality_info`` dicts (type, pos, vocab_size, max_tokens, image_size, patch_size,
feature_dim, id) built from plugin specs by :func:`modality_info_from_registry`; the model never looks at names.
"""

from __future__ import annotations

import json
import random
from collections.abc import Collection
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from fourm_core.model.blocks import (
    Block,
    DecoderBlock,
    KVCache,
    LayerNorm,
    attention_bias,
    xavier_uniform_fused,
)
from fourm_core.model.embeddings import build_decoder_embedding, build_encoder_embedding, is_sequence

#: Official size registry (``@register_model`` in fm.py): width, encoder/decoder depth, heads.
SIZES: dict[str, dict[str, int]] = {
    "tiny": {"dim": 384, "encoder_depth": 6, "decoder_depth": 6, "num_heads": 6},
    "small": {"dim": 512, "encoder_depth": 8, "decoder_depth": 8, "num_heads": 8},
    "B": {"dim": 768, "encoder_depth": 12, "decoder_depth": 12, "num_heads": 12},
    "L": {"dim": 1024, "encoder_depth": 24, "decoder_depth": 24, "num_heads": 16},
    "XL": {"dim": 2048, "encoder_depth": 24, "decoder_depth": 24, "num_heads": 32},
}
#: Official recipes: ``*_swiglu_nobias`` (the 4M-21 models) and ``*_gelu``.
RECIPES: dict[str, dict[str, Any]] = {
    "swiglu_nobias": {
        "qkv_bias": False,
        "proj_bias": False,
        "mlp_bias": False,
        "norm_bias": False,
        "act_layer": "SiLU",
        "gated_mlp": True,
    },
    "gelu": {
        "qkv_bias": True,
        "proj_bias": True,
        "mlp_bias": True,
        "norm_bias": True,
        "act_layer": "GELU",
        "gated_mlp": False,
    },
}
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def modality_info_from_registry(registry: Any, preset: str, text_vocab_size: int = 30000) -> dict[str, dict]:
    """``{model_key: info}`` for every model key of ``registry`` in ``preset``, from the specs only.

    Group members share a key; the first member's spec describes it. Text-vocabulary sequences get
    ``text_vocab_size``. ``id`` is the ml-4m uint15 hash of the model key.
    """
    from fourm_core.registry import modality_id
    from fourm_core.spec import Vocabulary

    infos: dict[str, dict] = {}
    for key, members in registry.model_keys(preset).items():
        spec = members[0].spec
        layout = spec.layout(preset)
        vocab = layout.vocab_size if spec.vocabulary == Vocabulary.OWN else None
        if spec.vocabulary == Vocabulary.TEXT:
            vocab = text_vocab_size
        infos[key] = {
            "type": spec.kind.value,
            "pos": spec.embedding.value,
            "vocab_size": vocab,
            "max_tokens": layout.max_tokens,
            "image_size": layout.image_size,
            "patch_size": layout.patch_size,
            "feature_dim": layout.feature_dim,
            "num_channels": 3,
            "id": modality_id(key),
            "input": not spec.target_only,
            "target": spec.is_target,
        }
    return infos


def fourm_config(
    modality_info: dict[str, dict], size: str = "tiny", recipe: str = "swiglu_nobias", **overrides: Any
) -> dict:
    """A config dict (official key names) for ``size`` / ``recipe`` over all inputs and targets of ``modality_info``."""
    config = {
        "domains_in": [k for k, v in modality_info.items() if v.get("input", True)],
        "domains_out": [k for k, v in modality_info.items() if v.get("target", True)],
        "modality_info": modality_info,
        **SIZES[size],
        **RECIPES[recipe],
    }
    config.update(overrides)
    return config


def _linspace(stop: float, n: int) -> list[float]:
    """Stochastic depth rates 0..stop over n blocks (``torch.linspace`` in plain Python, meta-device safe)."""
    return [stop * i / (n - 1) if n > 1 else 0.0 for i in range(n)]


class FourMNetwork(nn.Module):
    """Any-to-any masked encoder-decoder. Constructor keys follow the official HF ``config.json``."""

    def __init__(
        self,
        domains_in: list[str],
        domains_out: list[str],
        modality_info: dict[str, dict],
        dim: int = 768,
        encoder_depth: int = 12,
        decoder_depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        mlp_bias: bool = True,
        norm_bias: bool = True,
        act_layer: str = "GELU",
        gated_mlp: bool = False,
        qk_norm: bool = False,
        drop_path_rate_encoder: float = 0.0,
        drop_path_rate_decoder: float = 0.0,
        shared_drop_path: bool = False,
        decoder_causal_mask: bool = False,
        decoder_sep_mask: bool = True,
        num_register_tokens: int = 0,
        share_modality_embeddings: bool = True,
        share_embedding: bool = False,
        shuffle_decoder_modalities: bool = True,
        **unused: Any,
    ) -> None:
        super().__init__()
        self.config = {
            "domains_in": list(domains_in),
            "domains_out": list(domains_out),
            "modality_info": modality_info,
            "dim": dim,
            "encoder_depth": encoder_depth,
            "decoder_depth": decoder_depth,
            "num_heads": num_heads,
            "mlp_ratio": mlp_ratio,
            "qkv_bias": qkv_bias,
            "proj_bias": proj_bias,
            "mlp_bias": mlp_bias,
            "norm_bias": norm_bias,
            "act_layer": act_layer,
            "gated_mlp": gated_mlp,
            "qk_norm": qk_norm,
            "drop_path_rate_encoder": drop_path_rate_encoder,
            "drop_path_rate_decoder": drop_path_rate_decoder,
            "shared_drop_path": shared_drop_path,
            "decoder_causal_mask": decoder_causal_mask,
            "decoder_sep_mask": decoder_sep_mask,
            "num_register_tokens": num_register_tokens,
            "share_modality_embeddings": share_modality_embeddings,
            "share_embedding": share_embedding,
            **unused,
        }
        self.modality_info = modality_info
        self.dim = dim
        self.decoder_causal_mask = decoder_causal_mask
        self.decoder_sep_mask = decoder_sep_mask
        self.num_register_tokens = num_register_tokens
        self.shuffle_decoder_modalities = shuffle_decoder_modalities
        norm_layer = partial(LayerNorm, eps=1e-6, bias=norm_bias)
        act = getattr(nn, act_layer)

        self.encoder_embeddings = nn.ModuleDict({k: build_encoder_embedding(modality_info[k], dim) for k in domains_in})
        self.decoder_embeddings = nn.ModuleDict(
            {k: build_decoder_embedding(modality_info[k], dim, share_embedding) for k in domains_out}
        )
        if share_modality_embeddings:
            for key in self.decoder_embeddings:
                if key in self.encoder_embeddings:
                    self.decoder_embeddings[key].mod_emb = self.encoder_embeddings[key].mod_emb

        dpr_enc = _linspace(drop_path_rate_encoder, encoder_depth)
        dpr_dec = _linspace(drop_path_rate_decoder, decoder_depth)
        if shared_drop_path:
            dpr_all = _linspace(drop_path_rate_encoder, encoder_depth + decoder_depth)
            dpr_enc, dpr_dec = dpr_all[:encoder_depth], dpr_all[encoder_depth:]
        common = {
            "mlp_ratio": mlp_ratio,
            "qkv_bias": qkv_bias,
            "proj_bias": proj_bias,
            "mlp_bias": mlp_bias,
            "act_layer": act,
            "norm_layer": norm_layer,
            "gated_mlp": gated_mlp,
            "qk_norm": qk_norm,
        }
        self.encoder = nn.ModuleList([Block(dim, num_heads, drop_path=p, **common) for p in dpr_enc])
        self.encoder_norm = norm_layer(dim)
        self.decoder_proj_context = nn.Linear(dim, dim)  # always biased, as in ml-4m
        self.decoder = nn.ModuleList([DecoderBlock(dim, num_heads, drop_path=p, **common) for p in dpr_dec])
        self.decoder_norm = norm_layer(dim)

        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.mask_token, std=0.02)
        if num_register_tokens > 0:
            self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, dim))
            nn.init.normal_(self.register_tokens, std=0.02)
        self.init_weights()

    def init_weights(self) -> None:
        """MAE-style init (fused qkv / kv get a per-part xavier bound; embeddings normal(0.02), padding row too)."""
        for name, m in self.named_modules():
            if "tokenizer" in name:
                continue
            if isinstance(m, nn.Linear):
                if "qkv" in name:
                    xavier_uniform_fused(m.weight, 3)
                elif "kv" in name:
                    xavier_uniform_fused(m.weight, 2)
                else:
                    nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, LayerNorm):
                nn.init.ones_(m.weight)
                m.bias.data.zero_()
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)

    # ------------------------------------------------------------------ masking
    def _mod_id(self, key: str) -> int:
        return int(self.modality_info[key]["id"])

    def forward_mask_encoder(self, mod_dict: dict, num_encoder_tokens: int):
        keys = [k for k in mod_dict if k in self.encoder_embeddings]
        x = torch.cat([mod_dict[k]["x"] for k in keys], dim=1)
        emb = torch.cat([mod_dict[k]["emb"] for k in keys], dim=1)
        mask = torch.cat([mod_dict[k]["input_mask"] for k in keys], dim=1)
        mod_mask = torch.cat(
            [torch.full_like(mod_dict[k]["input_mask"], self._mod_id(k), dtype=torch.int16) for k in keys], dim=1
        )
        order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)[:, :num_encoder_tokens]
        x = torch.gather(x, 1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        emb = torch.gather(emb, 1, order.unsqueeze(-1).expand(-1, -1, emb.shape[-1]))
        mask = torch.gather(mask, 1, order)
        mod_mask = torch.gather(mod_mask, 1, order)
        if self.num_register_tokens > 0:
            B, R = x.shape[0], self.num_register_tokens
            x = torch.cat([self.register_tokens.expand(B, -1, -1), x], dim=1)
            emb = torch.cat([emb.new_zeros(B, R, emb.shape[-1]), emb], dim=1)
            mask = torch.cat([mask.new_zeros(B, R), mask], dim=1)
            mod_mask = torch.cat([mod_mask.new_full((B, R), -1), mod_mask], dim=1)
        keep = (~mask).unsqueeze(-1).to(x.dtype)
        x, emb = x * keep, emb * keep
        mod_mask = mod_mask.masked_fill(mask, -1)
        return x, emb, mask.unsqueeze(1), mod_mask

    def forward_mask_decoder(self, mod_dict: dict, num_decoder_tokens: int):
        keys = [k for k in mod_dict if k in self.decoder_embeddings]
        if self.shuffle_decoder_modalities:
            keys = random.sample(keys, len(keys))  # as ml-4m: a new modality order every call
        tokens, embs, ids, masks, attn, mods = [], [], [], [], [], []
        for k in keys:
            d = mod_dict[k]
            if is_sequence(self.modality_info[k]):
                tokens.append(d["x"][:, :-1])
                embs.append(d["emb"][:, :-1])
                ids.append(d["ids"][:, 1:])
                masks.append(d["target_mask"][:, 1:] | d["target_mask"][:, :-1])
                attn.append(d["decoder_attention_mask"][:, :-1])
            else:
                B, N = d["ids"].shape
                tokens.append(self.mask_token.expand(B, N, -1))
                embs.append(d["emb"])
                ids.append(d["ids"])
                masks.append(d["target_mask"])
                attn.append(d["decoder_attention_mask"])
            mods.append(torch.full_like(masks[-1], self._mod_id(k), dtype=torch.int16))
        x, emb = torch.cat(tokens, dim=1), torch.cat(embs, dim=1)
        ids, mask = torch.cat(ids, dim=1), torch.cat(masks, dim=1)
        attn, mod_mask = torch.cat(attn, dim=1), torch.cat(mods, dim=1)
        order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)[:, :num_decoder_tokens]
        x = torch.gather(x, 1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        emb = torch.gather(emb, 1, order.unsqueeze(-1).expand(-1, -1, emb.shape[-1]))
        ids, mask = torch.gather(ids, 1, order), torch.gather(mask, 1, order)
        attn, mod_mask = torch.gather(attn, 1, order), torch.gather(mod_mask, 1, order)
        keep = (~mask).unsqueeze(-1).to(x.dtype)
        x, emb = x * keep, emb * keep
        ids = ids.masked_fill(mask, 0)
        attention_mask = self.adapt_decoder_attention_mask(attn, mod_mask)
        mod_mask = mod_mask.masked_fill(mask, -1)
        return x, emb, ids, attention_mask, mask.unsqueeze(1), mod_mask

    def adapt_decoder_attention_mask(self, compressed: torch.Tensor, mod_mask: torch.Tensor) -> torch.Tensor:
        """(B, M) compressed counts -> (B, M, M) bool, True = blocked (row i sees columns j < cumsum[i])."""
        B, M = compressed.shape
        arange = torch.arange(M, device=compressed.device)
        if self.decoder_causal_mask:
            blocked = (arange[None, :] > arange[:, None]).expand(B, M, M)
        else:
            cumsum = torch.cumsum(compressed, dim=-1)
            blocked = ~(arange.view(1, 1, M) < cumsum.unsqueeze(-1))
        if self.decoder_sep_mask:
            blocked = blocked | (mod_mask.unsqueeze(1) != mod_mask.unsqueeze(2))
        return blocked

    # ------------------------------------------------------------------ forward
    def forward_encoder(self, x: torch.Tensor, encoder_mask: torch.Tensor) -> torch.Tensor:
        """Encoder blocks; a bool ``encoder_mask`` becomes one additive bias shared by every block."""
        bias = attention_bias(encoder_mask, x.dtype)
        for block in self.encoder:
            x = block(x, bias)
        return self.encoder_norm(x)

    def forward_decoder(
        self,
        y: torch.Tensor,
        context: torch.Tensor,
        encoder_mask: torch.Tensor,
        decoder_attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Decoder blocks; both masks become additive biases once, shared by every block (the (B, 1, M, M)
        self-attention bias is the big one: built per block it cost a fill and a copy kept alive per layer)."""
        xa_bias = attention_bias(encoder_mask, y.dtype)
        sa_bias = attention_bias(decoder_attention_mask, y.dtype)
        for block in self.decoder:
            y = block(y, context, sa_mask=sa_bias, xa_mask=xa_bias)
        return self.decoder_norm(y)

    # ------------------------------------------------------------------ incremental decoding (generation)
    def encode(self, mod_dict: dict[str, dict[str, torch.Tensor]], num_encoder_tokens: int):
        """``(context, encoder_mask)`` exactly as :meth:`forward` computes them, for callers that decode many
        times against one encoding (autoregressive generation encodes once per target)."""
        enc_dict = {k: self.encoder_embeddings[k](dict(d)) for k, d in mod_dict.items() if k in self.encoder_embeddings}
        x, emb, encoder_mask, _ = self.forward_mask_encoder(enc_dict, num_encoder_tokens)
        x = self.forward_encoder(x + emb, encoder_mask)
        return self.decoder_proj_context(x) + emb, encoder_mask

    def init_decoder_cache(self, context: torch.Tensor) -> list[KVCache]:
        """One :class:`~fourm_core.model.blocks.KVCache` per decoder block: the cross-attention keys/values of
        ``context`` computed once, the self-attention part empty."""
        return [block.init_cache(context) for block in self.decoder]

    def forward_decoder_cached(
        self, y: torch.Tensor, cache: list[KVCache], encoder_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Decoder output for the newest positions ``y`` (B, T, D) of a causally decoded sequence, attending to
        every position in ``cache`` (which grows by T). Equals the matching rows of :meth:`forward_decoder` with a
        causal mask, up to float rounding; the decoder runs only for the new positions."""
        xa_bias = attention_bias(encoder_mask, y.dtype)
        for block, block_cache in zip(self.decoder, cache, strict=True):
            y = block.forward_cached(y, block_cache, xa_mask=xa_bias)
        return self.decoder_norm(y)

    def forward(
        self,
        mod_dict: dict[str, dict[str, torch.Tensor]],
        num_encoder_tokens: int,
        num_decoder_tokens: int,
        loss_type: str = "mod",
        return_logits: bool = False,
        logits_for: Collection[str] | None = None,
    ):
        """Official batch format in, ``(loss, {model_key: loss})`` out (or per-key logits with ``return_logits``).

        ``logits_for``: with ``return_logits``, only these keys' logits (ml-4m runs every output head over every
        decoder position; a sampler that decodes one key would spend most of a step on heads it throws away)."""
        enc_dict = {k: self.encoder_embeddings[k](dict(d)) for k, d in mod_dict.items() if k in self.encoder_embeddings}
        x, emb, encoder_mask, _ = self.forward_mask_encoder(enc_dict, num_encoder_tokens)
        dec_dict = {
            k: self.decoder_embeddings[k].forward_embed(dict(d))
            for k, d in mod_dict.items()
            if k in self.decoder_embeddings
        }
        y_tok, y_emb, targets, dec_attn, _, dec_mods = self.forward_mask_decoder(dec_dict, num_decoder_tokens)

        x = self.forward_encoder(x + emb, encoder_mask)
        context = self.decoder_proj_context(x) + emb  # ml-4m adds the encoder embeddings again
        y = self.forward_decoder(y_tok + y_emb, context, encoder_mask, dec_attn)

        if return_logits:
            wanted = dec_dict if logits_for is None else [k for k in dec_dict if k in logits_for]
            return {k: self.decoder_embeddings[k].forward_logits(y) for k in wanted}
        losses: dict[str, torch.Tensor] = {}
        weights: dict[str, int] = {}
        for k in dec_dict:
            idx = dec_mods == self._mod_id(k)
            if idx.any():
                logits = self.decoder_embeddings[k].forward_logits(y[idx])
                losses[k] = F.cross_entropy(logits.float(), targets[idx].long())
                weights[k] = logits.numel()
            else:
                losses[k] = y.sum() * 0.0  # keeps the head in the graph; counts in the mean as in ml-4m
                weights[k] = 0
        if loss_type == "mod":
            loss = sum(losses.values()) / len(losses)
        elif loss_type == "token":  # ml-4m weights by n_tokens * vocab_size; kept for comparison
            total = sum(weights.values())
            loss = sum(losses[k] * weights[k] for k in losses) / max(total, 1)
        else:
            raise ValueError(f"unknown loss_type {loss_type!r}")
        return loss, losses

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, directory: str | Path) -> None:
        """``model.safetensors`` (every key, shared tensors stored as copies) and ``config.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().clone().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
        (directory / CONFIG_NAME).write_text(json.dumps(self.config, indent=2))

    @classmethod
    def from_pretrained(cls, directory: str | Path, strict: bool = True, **overrides: Any) -> FourMNetwork:
        directory = Path(directory)
        config = json.loads((directory / CONFIG_NAME).read_text())
        config.update(overrides)
        model = cls(**config)
        model.load_state_dict(load_file(str(directory / WEIGHTS_NAME)), strict=strict)
        return model


_OFFICIAL_SIZE_WORDS = {"tiny": "tiny", "small": "small", "base": "B", "large": "L", "xlarge": "XL"}


def parse_official_model_name(name: str) -> tuple[str, str, bool]:
    """``fm_base_12e_12d_swiglu_nobias`` -> (``B``, ``swiglu_nobias``, qk_norm False); checks depths against SIZES."""
    parts = name.split("_")
    if len(parts) < 5 or parts[0] != "fm" or parts[1] not in _OFFICIAL_SIZE_WORDS:
        raise ValueError(f"not an official FourMNetwork model name: {name!r}")
    size = _OFFICIAL_SIZE_WORDS[parts[1]]
    enc, dec = int(parts[2].rstrip("e")), int(parts[3].rstrip("d"))
    if (enc, dec) != (SIZES[size]["encoder_depth"], SIZES[size]["decoder_depth"]):
        raise ValueError(f"{name!r}: depths {enc}/{dec} differ from size {size}")
    rest = parts[4:]
    qk_norm = "qknorm" in rest
    recipe = "gelu" if rest == ["gelu"] else "swiglu_nobias"
    return size, recipe, qk_norm
