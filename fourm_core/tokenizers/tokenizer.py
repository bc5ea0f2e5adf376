"""The tokenizer object plugins and users hold: raw arrays or tensors -> token ids -> tensors or raw arrays.

``Tokenizer`` wraps the network of its family (:mod:`fourm_core.tokenizers.families`), the transform that says how
stored arrays become tensors, and (for the ``divae`` family) the diffusion decoder. Weights are saved as
``model.safetensors`` and the configuration as ``config.json``; nothing is pickled.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from fourm_core.errors import load_safetensors, read_json
from fourm_core.tokenizers.config import TokenizerModelConfig
from fourm_core.tokenizers.families import get_family
from fourm_core.tokenizers.transforms import Transform, make_transform

__all__ = ["Tokenizer", "TokenizerError"]

WEIGHTS, CONFIG = "model.safetensors", "config.json"


class TokenizerError(RuntimeError):
    """A tokenizer cannot do what was asked (untrained, wrong input shape, unknown directory)."""


class Tokenizer:
    """Encode modality data to token ids and decode them back.

    ``encode`` takes a batch tensor in the transform's space (or use :meth:`encode_raw` with stored arrays) and
    returns ``(B, n_tokens)`` int64 ids; ``decode`` returns the model-space prediction; ``decode_raw`` returns
    arrays in the stored form. ``sampler="diffusion"`` decodes with the diffusion decoder where there is one.
    """

    def __init__(self, config: TokenizerModelConfig) -> None:
        self.config = config
        self.transform: Transform = make_transform(config.transform, config.channels, config.num_classes)
        family = get_family(config.family)
        if family.network is None:
            raise TokenizerError(f"tokenizer {config.name!r}: family {config.family} has no network")
        self.network = family.network(config, self.transform.out_channels)
        self.diffusion = (
            family.decoder(config, self.transform.out_channels) if family.decoder and config.diffusion else None
        )
        self.info: dict[str, Any] = {"trained": False}

    # ------------------------------------------------------------------------------------------------------------
    # properties
    # ------------------------------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def trained(self) -> bool:
        return bool(self.info.get("trained"))

    @property
    def n_tokens(self) -> int:
        return self.config.n_tokens

    @property
    def vocab_size(self) -> int:
        return self.config.codebook_size

    def modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.network, self.diffusion) if m is not None]

    def eval(self) -> Tokenizer:
        for m in self.modules():
            m.eval()
        return self

    def device(self) -> torch.device:
        """Where the network's weights are (inputs are moved there; ids come back on the CPU)."""
        return next(self.network.parameters()).device

    # ------------------------------------------------------------------------------------------------------------
    # encoding and decoding
    # ------------------------------------------------------------------------------------------------------------

    def _check_input(self, batch: torch.Tensor) -> None:
        cfg = self.config
        if cfg.input_size:
            expect = (cfg.input_size, cfg.input_size)
            if tuple(batch.shape[-2:]) != expect:
                raise TokenizerError(
                    f"tokenizer {cfg.name!r}: expected inputs of {expect[0]}x{expect[1]}, got {tuple(batch.shape)}"
                )
        elif batch.shape[-1] != cfg.channels:
            raise TokenizerError(
                f"tokenizer {cfg.name!r}: expected vectors of {cfg.channels}, got {tuple(batch.shape)}"
            )

    @torch.no_grad()
    def encode(self, batch: torch.Tensor) -> torch.Tensor:
        """Token ids ``(B, n_tokens)`` of a batch in the transform's space."""
        self._check_input(batch)
        self.network.eval()
        _, ids, _ = self.network.encode(batch)
        return ids.reshape(len(batch), -1).long()

    def encode_raw(self, raws: Sequence[np.ndarray]) -> torch.Tensor:
        """Token ids of stored-form arrays (e.g. ``(H, W)`` metric depth maps)."""
        return self.encode(self.transform.batch(raws).to(self.device())).cpu()

    @torch.no_grad()
    def decode(
        self,
        ids: torch.Tensor,
        sampler: str = "plain",
        steps: int | None = None,
        seed: int = 0,
        strength: float | None = None,
    ) -> torch.Tensor:
        """Model-space reconstruction of token ids (values, class indices or probabilities); ``sampler`` is
        ``plain`` (the VQ-VAE decoder, one pass) or ``diffusion`` (DDIM with ``steps`` and ``strength``)."""
        ids = torch.as_tensor(ids).long().to(self.device())
        if ids.ndim == 1:
            ids = ids[None]
        if ids.shape[-1] != self.n_tokens:
            raise TokenizerError(f"tokenizer {self.name!r}: expected {self.n_tokens} tokens, got {ids.shape[-1]}")
        if int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size:
            raise TokenizerError(f"tokenizer {self.name!r}: token ids must be in 0..{self.vocab_size - 1}")
        self.eval()
        if sampler == "diffusion":
            if self.diffusion is None:
                raise TokenizerError(f"tokenizer {self.name!r} ({self.config.family}) has no diffusion decoder")
            out = self._sample(ids, steps or self.config.diffusion.sample_steps, seed, strength)
        elif sampler == "plain":
            out = self.network.decode_ids(ids)
        else:
            raise TokenizerError(f"unknown sampler {sampler!r}: use 'plain' or 'diffusion'")
        return self.transform.prediction(out)

    def decode_raw(self, ids: torch.Tensor, **kwargs: Any) -> list[np.ndarray]:
        """Reconstructions in the stored form, one array per row of ``ids``."""
        return [self.transform.to_raw(x) for x in self.decode(ids, **kwargs)]

    def _sample(self, ids: torch.Tensor, steps: int, seed: int, strength: float | None = None) -> torch.Tensor:
        """DDIM sampling (diffusers) of the diffusion decoder, conditioned on the tokens; with ``strength`` < 1 it
        starts from the plain reconstruction noised to that share of the schedule."""
        from diffusers import DDIMScheduler

        strength = self.config.diffusion.strength if strength is None else strength
        quant = self.network.ids_to_quant(ids)
        plain = self.network.decode_quant(quant)
        scheduler = DDIMScheduler(**self.scheduler_config())
        scheduler.set_timesteps(steps)
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(plain.shape, generator=generator).to(plain.device)  # CPU draws: same on every device
        timesteps = scheduler.timesteps
        if strength < 1:
            timesteps = timesteps[min(int(round(len(timesteps) * (1 - strength))), len(timesteps) - 1) :]
            x = scheduler.add_noise(plain, noise, timesteps[:1].expand(len(plain)))
        else:
            x = noise
        for t in timesteps:
            x0 = self.diffusion(x, t.expand(len(x)).to(plain.device), quant, plain)
            x = scheduler.step(x0, t, x).prev_sample
        return x

    def scheduler_config(self) -> dict[str, Any]:
        d = self.config.diffusion
        assert d is not None
        return {
            "num_train_timesteps": d.train_timesteps,
            "beta_schedule": d.beta_schedule,
            "prediction_type": "sample",
            "clip_sample": False,
        }

    # ------------------------------------------------------------------------------------------------------------
    # saving and loading
    # ------------------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"network.{k}": v for k, v in self.network.state_dict().items()}
        if self.diffusion is not None:
            state.update({f"diffusion.{k}": v for k, v in self.diffusion.state_dict().items()})
        state.update({f"transform.{k}": v for k, v in self.transform.stats.items()})
        return {k: v.detach().contiguous().clone() for k, v in state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

        self.network.load_state_dict(part("network."), strict=True)
        if self.diffusion is not None:
            self.diffusion.load_state_dict(part("diffusion."), strict=True)
        self.transform.stats = part("transform.")

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(self.state_dict(), str(directory / WEIGHTS), metadata={"format": "fourm-tokenizer"})
        payload = {"config": self.config.model_dump(mode="json"), "info": self.info}
        (directory / CONFIG).write_text(json.dumps(payload, indent=2, default=float) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> Tokenizer:
        """Load a tokenizer saved by :meth:`save_pretrained`."""
        directory = Path(directory)
        if not (directory / CONFIG).exists() or not (directory / WEIGHTS).exists():
            raise TokenizerError(f"no trained tokenizer in {directory} (expected {CONFIG} and {WEIGHTS})")
        payload = read_json(directory / CONFIG, "tokenizer config")
        if not isinstance(payload, dict) or "config" not in payload:
            raise TokenizerError(f"{directory / CONFIG}: not a tokenizer config (no 'config' entry)")
        tok = cls(TokenizerModelConfig.model_validate(payload["config"]))
        tok.load_state_dict(load_safetensors(directory / WEIGHTS, "tokenizer weights file"))
        tok.info = payload.get("info", {})
        return tok.eval()
