"""FourMNetwork encoder-decoder, state-dict compatible with apple/ml-4m ``fourm/models/fm.py``.

The network is built from a :class:`~fourm_core.model.config.FourMConfig` (sizes, recipe flags, domains and the typed
key table, :class:`~fourm_core.keys.KeyTable`) and keeps it as ``.config``; each key's embedding module is chosen by
its :class:`~fourm_core.keys.KeyInfo` kind, never by its name.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from fourm_core.errors import FileFormatError, load_safetensors
from fourm_core.keys import KeyTable
from fourm_core.model.blocks import (
    Block,
    DecoderBlock,
    KVCache,
    LayerNorm,
    attention_bias,
    xavier_uniform_fused,
)
from fourm_core.model.config import CONFIG_NAME, RECIPES, SIZES, FourMConfig, fourm_config, read_config
from fourm_core.model.embeddings import build_decoder_embedding, build_encoder_embedding

__all__ = [
    "CONFIG_NAME",
    "RECIPES",
    "SIZES",
    "WEIGHTS_NAME",
    "FourMConfig",
    "FourMNetwork",
    "fourm_config",
    "parse_official_model_name",
]

WEIGHTS_NAME = "model.safetensors"


def _linspace(stop: float, n: int) -> list[float]:
    """Stochastic depth rates 0..stop over n blocks (``torch.linspace`` in plain Python, meta-device safe)."""
    return [stop * i / (n - 1) if n > 1 else 0.0 for i in range(n)]


class FourMNetwork(nn.Module):
    """Any-to-any masked encoder-decoder over the keys of ``config.keys`` (see :class:`FourMConfig`)."""

    def __init__(self, config: FourMConfig) -> None:
        super().__init__()
        if not isinstance(config, FourMConfig):
            raise TypeError(f"FourMNetwork takes a FourMConfig (see fourm_config), not {type(config).__name__}")
        self.config = config
        c = config
        self.keys: KeyTable = c.keys
        self._ids = {k: info.id for k, info in c.keys.items()}
        self.dim = dim = c.dim
        self.decoder_causal_mask = c.decoder_causal_mask
        self.decoder_sep_mask = c.decoder_sep_mask
        self.num_register_tokens = c.num_register_tokens
        self.shuffle_decoder_modalities = c.shuffle_decoder_modalities
        norm_layer = partial(LayerNorm, eps=1e-6, bias=c.norm_bias)
        act = getattr(nn, c.act_layer)

        self.encoder_embeddings = nn.ModuleDict({k: build_encoder_embedding(c.keys[k], dim) for k in c.domains_in})
        self.decoder_embeddings = nn.ModuleDict(
            {k: build_decoder_embedding(c.keys[k], dim, c.share_embedding) for k in c.domains_out}
        )
        if c.share_modality_embeddings:
            for key in self.decoder_embeddings:
                if key in self.encoder_embeddings:
                    self.decoder_embeddings[key].mod_emb = self.encoder_embeddings[key].mod_emb

        dpr_enc = _linspace(c.drop_path_rate_encoder, c.encoder_depth)
        dpr_dec = _linspace(c.drop_path_rate_decoder, c.decoder_depth)
        if c.shared_drop_path:
            dpr_all = _linspace(c.drop_path_rate_encoder, c.encoder_depth + c.decoder_depth)
            dpr_enc, dpr_dec = dpr_all[: c.encoder_depth], dpr_all[c.encoder_depth :]
        common = {
            "mlp_ratio": c.mlp_ratio,
            "qkv_bias": c.qkv_bias,
            "proj_bias": c.proj_bias,
            "mlp_bias": c.mlp_bias,
            "act_layer": act,
            "norm_layer": norm_layer,
            "gated_mlp": c.gated_mlp,
            "qk_norm": c.qk_norm,
        }
        self.encoder = nn.ModuleList([Block(dim, c.num_heads, drop_path=p, **common) for p in dpr_enc])
        self.encoder_norm = norm_layer(dim)
        self.decoder_proj_context = nn.Linear(dim, dim)  # always biased, as in ml-4m
        self.decoder = nn.ModuleList([DecoderBlock(dim, c.num_heads, drop_path=p, **common) for p in dpr_dec])
        self.decoder_norm = norm_layer(dim)

        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.mask_token, std=0.02)
        if c.num_register_tokens > 0:
            self.register_tokens = nn.Parameter(torch.zeros(1, c.num_register_tokens, dim))
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
        return self._ids[key]

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
            if self.keys[k].is_sequence:
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
            x = self._run(block, x, bias)
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
            y = self._run(block, y, context, sa_bias, xa_bias)
        return self.decoder_norm(y)

    def _run(self, block: nn.Module, *args: Any) -> torch.Tensor:
        """``block(*args)``, its activations recomputed in backward when the config asks for it (ml-4m's
        ``use_act_checkpoint``: less training memory for one more forward per block)."""
        if self.config.use_act_checkpoint and self.training and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    # ------------------------------------------------------------------ incremental decoding (generation)
    def encode_tokens(self, mod_dict: dict[str, dict[str, torch.Tensor]], num_encoder_tokens: int):
        """``(tokens, emb, encoder_mask)``: the encoder output after ``encoder_norm`` (B, N, D), the position +
        modality embeddings of those N tokens and the (B, 1, N) mask (True = padding), as :meth:`forward` computes
        them. The tokens are what ml-4m's ``FMViT`` hands a transfer head."""
        enc_dict = {k: self.encoder_embeddings[k](dict(d)) for k, d in mod_dict.items() if k in self.encoder_embeddings}
        x, emb, encoder_mask, _ = self.forward_mask_encoder(enc_dict, num_encoder_tokens)
        return self.forward_encoder(x + emb, encoder_mask), emb, encoder_mask

    def encode(self, mod_dict: dict[str, dict[str, torch.Tensor]], num_encoder_tokens: int):
        """``(context, encoder_mask)`` exactly as :meth:`forward` computes them, for callers that decode many
        times against one encoding (autoregressive generation encodes once per target)."""
        x, emb, encoder_mask = self.encode_tokens(mod_dict, num_encoder_tokens)
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
        """``model.safetensors`` (every key, shared tensors stored as copies) and ``config.json`` (the
        :class:`FourMConfig`, key table included, with the current ``shuffle_decoder_modalities``)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().clone().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
        config = self.config
        if config.shuffle_decoder_modalities != self.shuffle_decoder_modalities:  # switched on the module
            config = config.model_copy(update={"shuffle_decoder_modalities": self.shuffle_decoder_modalities})
        config.save(directory)

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, strict: bool = True, registry: Any = None, **overrides: Any
    ) -> FourMNetwork:
        """The network saved in ``directory``: fourm's ``config.json`` as written by :meth:`save_pretrained`, an
        older fourm one, or ml-4m's official one (the key table then comes from ``registry``, by default the
        installed plugins; see :func:`~fourm_core.model.config.read_config`). ``overrides`` replace config fields."""
        directory = Path(directory)
        model = cls(read_config(directory, registry, **overrides))
        weights = directory / WEIGHTS_NAME
        try:
            model.load_state_dict(load_safetensors(weights, "model weights file"), strict=strict)
        except RuntimeError as exc:  # missing / unexpected keys, wrong shapes: weights of another config
            first = str(exc).splitlines()[1:2] or [str(exc)]
            raise FileFormatError(
                f"{weights}: the weights do not fit {directory / CONFIG_NAME} ({first[0].strip()})"
            ) from None
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
