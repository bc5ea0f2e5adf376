"""``OfficialTokenizer``: an official ml-4m tokenizer module as fourm's pipeline and renderers use a tokenizer, and
with ml-4m's own method names, so code from ml-4m's notebooks ports over unchanged.

Two faces over one ``nn.Module`` (H1's ``VQVAE`` or H2's ``DiVAE``, loaded by
:func:`~fourm_core.tokenizers.official.loader.load_official_tokenizer`):

- fourm's interface (what :mod:`fourm_core.inference` and :mod:`fourm_core.viz` call, see
  :class:`~fourm_core.tokenizers.tokenizer.Tokenizer`): ``name``, ``trained``, ``n_tokens``, ``vocab_size``,
  ``config`` (an :class:`OfficialTokenizerConfig` with the fields the pipeline reads: ``transform``, ``items``,
  ``input_size``...), ``transform`` (fourm's transform of the stored form, used to fuse several draws), ``eval``,
  ``encode_raw(raws)`` from the modality's stored arrays, ``decode(ids)`` to the tokenizer's space and
  ``decode_raw(ids, **kwargs)`` back to the stored form. The stored arrays reach the tokenizer through the plugin's
  declared normalisation (:mod:`~fourm_core.tokenizers.official.normalisation`), so nobody feeds an
  ImageNet-normalised picture to the RGB tokenizer (ml-4m issue 22).
- ml-4m's interface, unchanged: ``tokenize(x)``, ``encode(x) -> (quant, code_loss, tokens)``,
  ``decode_tokens(tokens, **kwargs)`` (diffusion tokenizers: ``timesteps=``, ``generator=``, ``image_size=``,
  ``scheduler=``...), ``decode_quant``, ``autoencode(x, **kwargs)`` and ``__call__`` (the module's ``forward``;
  diffusion: ``tok(input_clean=..., input_noised=..., timesteps=...) -> (decoded, code_loss)``). ``x`` is normalised
  as ml-4m expects; :meth:`OfficialTokenizer.normalise` does that from natural values.

``encode`` is ml-4m's (it returns the triple); fourm code never calls a tokenizer's ``encode`` directly, only
``encode_raw``, whose token ids ``(B, n_tokens)`` are ``tokenize(...)`` flattened.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fourm_core.spec.official import Normalisation
from fourm_core.tokenizers.official.loader import OfficialTokenizerError, official_class_name
from fourm_core.tokenizers.official.normalisation import NORMALISERS, RAW_FORMS, RawForm

if TYPE_CHECKING:
    from fourm_core.spec import ModalitySpec
    from fourm_core.tokenizers.transforms import Transform

__all__ = ["OfficialTokenizer", "OfficialTokenizerConfig", "OfficialTokenizerError"]


def _codebook_size(value: Any) -> int:
    """ml-4m's ``codebook_size`` is an int, or a string: digits, or ``'8-5-5'`` levels (FSQ) whose product it is."""
    if isinstance(value, str) and "-" in value:
        return math.prod(int(v) for v in value.split("-"))
    return int(value)


@dataclass(frozen=True)
class OfficialTokenizerConfig:
    """The fourm-facing description of an official tokenizer: the fields pipeline code reads from a tokenizer's
    ``config`` (``transform``, ``items``, ``input_size``, ``n_tokens``...), next to the hub config it came from."""

    name: str
    hub_id: str | None
    normalisation: Normalisation
    transform: str | None
    n_tokens: int
    codebook_size: int
    channels: int
    vector: bool
    diffusion: bool
    input_size: int = 0
    patch_size: int = 16
    modalities: tuple[str, ...] = ()
    source: tuple[str, str] | None = None
    items: str | None = None
    evaluator: str | None = None
    num_classes: int | None = None
    family: str = "official"
    preset: str = "paper"


class OfficialTokenizer:
    """An official ml-4m tokenizer with fourm's interface and ml-4m's method names (see the module docstring).

    Build it with :meth:`for_spec` (a modality's declared assets) or :meth:`from_hub_config` (a bare folder, as
    :func:`fourm_core.tokenizers.from_pretrained` does); ``module`` is the loaded ``nn.Module``, ``hub_config`` the
    flat constructor kwargs of its ``config.json``.
    """

    def __init__(self, module: torch.nn.Module, hub_config: Mapping[str, Any], config: OfficialTokenizerConfig):
        # typed Any: ml-4m's method names (tokenize, decode_tokens...) are what this class exists to call
        self.module: Any = module
        self.hub_config = dict(hub_config)
        self.config = config
        self._normaliser = NORMALISERS[config.normalisation]
        self._transform: Transform | None = None

    # ----------------------------------------------------------------------------------------------------- building
    @classmethod
    def from_hub_config(
        cls,
        module: torch.nn.Module,
        hub_config: Mapping[str, Any],
        *,
        name: str | None = None,
        hub_id: str | None = None,
        normalisation: Normalisation | str = Normalisation.NONE,
        transform: str | None = None,
        n_tokens: int | None = None,
        **extra: Any,
    ) -> OfficialTokenizer:
        """Everything the hub config says (channels, codebook, grid at its ``image_size``), plus what it cannot say:
        the input normalisation and the stored form (``transform``), which a modality's declaration supplies."""
        cfg = dict(hub_config)
        vector = "MLP" in str(cfg.get("enc_type", ""))  # ml-4m's own test for its MLP (global, pose) encoders
        patch = int(cfg.get("patch_size") or 16)
        if n_tokens is None:
            side = int(cfg.get("image_size") or 224) // patch
            n_tokens = int(cfg.get("num_codebooks") or 1) if vector else side * side
        if transform is not None and transform not in RAW_FORMS:
            known = ", ".join(sorted(RAW_FORMS))
            raise OfficialTokenizerError(f"tokenizer {name!r}: stored form {transform!r} is not one of {known}")
        config = OfficialTokenizerConfig(
            name=name or str(hub_id or "official"),
            hub_id=hub_id,
            normalisation=Normalisation(normalisation),
            transform=transform,
            n_tokens=n_tokens,
            codebook_size=_codebook_size(cfg.get("codebook_size", 16384)),
            channels=int(cfg.get("n_channels") or 3),
            vector=vector,
            diffusion=official_class_name(cfg) == "DiVAE",  # ml-4m's get_image_tokenizer rule
            patch_size=patch,
            num_classes=cfg.get("n_labels"),
            **extra,
        )
        return cls(module, cfg, config)

    @classmethod
    def for_spec(cls, module: torch.nn.Module, hub_config: Mapping[str, Any], spec: ModalitySpec) -> OfficialTokenizer:
        """The tokenizer of the modality ``spec`` declares: its normalisation, grid or tokens per item, stored form
        and item extractor come from the plugin (``spec.official``, ``spec.tokenizer``)."""
        official = spec.official
        if official is None:
            raise OfficialTokenizerError(f"modality {spec.name!r} declares no official assets")
        tok = spec.tokenizer
        n_tokens = official.grid**2 if official.grid else official.tokens_per_item
        item_size = (tok.item_size.get("paper") if tok else None) or 0
        side = official.grid * int(hub_config.get("patch_size") or 16) if official.grid else item_size
        return cls.from_hub_config(
            module,
            hub_config,
            name=(tok.shared_as if tok and tok.shared_as else spec.name),
            hub_id=official.hub_id,
            normalisation=official.normalisation,
            transform=tok.transform if tok else None,
            n_tokens=n_tokens,
            modalities=(spec.name,),
            source=tuple(tok.source.split(".", 1)) if tok and tok.source else None,
            items=tok.items if tok else None,
            evaluator=tok.evaluator if tok else None,
            input_size=side,
        )

    # ------------------------------------------------------------------------------------------ fourm's interface
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def trained(self) -> bool:
        """Published weights are trained weights."""
        return True

    @property
    def n_tokens(self) -> int:
        return self.config.n_tokens

    @property
    def vocab_size(self) -> int:
        return self.config.codebook_size

    @property
    def transform(self) -> Transform:
        """fourm's transform of the stored form, for what is independent of the tokenizer (fusing N draws)."""
        if self._transform is None:
            from fourm_core.tokenizers.transforms import make_transform

            self._transform = make_transform(self._raw_form().name, self.config.channels, self.config.num_classes)
        return self._transform

    def modules(self) -> list[torch.nn.Module]:
        return [self.module]

    def eval(self) -> OfficialTokenizer:
        self.module.eval()
        return self

    def to(self, *args: Any, **kwargs: Any) -> OfficialTokenizer:
        self.module.to(*args, **kwargs)
        return self

    def _raw_form(self) -> RawForm:
        if self.config.transform is None:
            raise OfficialTokenizerError(
                f"tokenizer {self.name!r}: no stored form is declared, so only ml-4m's tensor methods (tokenize, "
                "decode_tokens) apply; load it through a modality (tokenizers='official') for encode_raw/decode_raw"
            )
        return RAW_FORMS[self.config.transform]

    def _device(self) -> torch.device:
        return next(iter(self.module.parameters()), torch.empty(0)).device

    def normalise(self, natural: torch.Tensor) -> torch.Tensor:
        """Natural values (pixels in [0, 1], linear depth, COCO ids, features) to what the tokenizer takes."""
        return self._normaliser.forward(natural)

    def denormalise(self, values: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """The inverse of :meth:`normalise` (robust depth: pass ``stats=(mean, std)`` to recover the scale)."""
        return self._normaliser.inverse(values, **kwargs)

    def _fit_channels(self, x: torch.Tensor) -> torch.Tensor:
        """Single-channel maps to the module's channels: ml-4m reads edge maps as RGB (three equal channels)."""
        if x.ndim == 4 and x.shape[1] == 1 and self.config.channels > 1 and not self.config.vector:
            return x.expand(-1, self.config.channels, -1, -1)
        return x

    def prepare(self, raws: Sequence[np.ndarray]) -> torch.Tensor:
        """Stored-form arrays to the batch ml-4m's tokenizer takes (stored form -> natural -> normalised)."""
        form = self._raw_form()
        natural = torch.stack([form.to_natural(np.asarray(r)) for r in raws])
        return self._fit_channels(self.normalise(natural)).to(self._device())

    @torch.no_grad()
    def encode_raw(self, raws: Sequence[np.ndarray]) -> torch.Tensor:
        """Token ids ``(B, n_tokens)`` of stored-form arrays."""
        self.module.eval()
        return self.tokenize(self.prepare(raws)).reshape(len(raws), -1).long().cpu()

    def _token_grid(self, ids: torch.Tensor) -> torch.Tensor:
        """``(B, n)`` ids to the shape ``decode_tokens`` takes: ``(B, n, 1, 1)`` for MLP tokenizers (ml-4m's
        ``'b n -> b n 1 1'``), else the square ``(B, side, side)``."""
        ids = torch.as_tensor(ids).long()
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2:
            return ids  # already in ml-4m's layout
        if self.config.vector:
            return ids[:, :, None, None]
        side = math.isqrt(ids.shape[1])
        if side * side != ids.shape[1]:
            raise OfficialTokenizerError(f"tokenizer {self.name!r}: {ids.shape[1]} tokens do not form a square grid")
        return ids.reshape(len(ids), side, side)

    def _decode_kwargs(self, ids: torch.Tensor, kwargs: dict[str, Any]) -> dict[str, Any]:
        """fourm's decode options (``steps``, ``seed``) in ml-4m's words, with deterministic defaults for diffusion
        tokenizers (ml-4m's plotting decodes with 25 steps at the grid's image size; seed 0 as fourm's decode)."""
        kwargs = dict(kwargs)
        steps, seed = kwargs.pop("steps", None), kwargs.pop("seed", 0)
        kwargs.pop("sampler", None)  # one decoder only: a diffusion tokenizer has no plain decoder to choose
        if kwargs.pop("strength", None) not in (None, 1, 1.0):
            raise OfficialTokenizerError(f"tokenizer {self.name!r}: ml-4m's decoders have no partial-noise strength")
        if not self.config.diffusion:
            return kwargs
        kwargs.setdefault("timesteps", steps or 25)
        if "generator" not in kwargs and seed is not None:
            kwargs["generator"] = torch.Generator(device=self._device()).manual_seed(int(seed))
        if not self.config.vector and ids.ndim >= 3:
            patch = self.config.patch_size
            kwargs.setdefault("image_size", (int(ids.shape[-2]) * patch, int(ids.shape[-1]) * patch))
        kwargs.setdefault("verbose", False)
        return kwargs

    @torch.no_grad()
    def decode(self, ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Token ids ``(B, n_tokens)`` to the decoder's output in the tokenizer's space, after the stored form's
        prediction step (class argmax, mask sigmoid) when one is declared."""
        grid = self._token_grid(ids).to(self._device())
        if int(grid.min()) < 0 or int(grid.max()) >= self.vocab_size:
            raise OfficialTokenizerError(f"tokenizer {self.name!r}: token ids must be in 0..{self.vocab_size - 1}")
        self.module.eval()
        out = self.decode_tokens(grid, **self._decode_kwargs(grid, kwargs))
        return RAW_FORMS[self.config.transform].prediction(out) if self.config.transform else out

    def decode_raw(self, ids: torch.Tensor, **kwargs: Any) -> list[np.ndarray]:
        """Reconstructions in the stored form, one array per row of ``ids``."""
        form = self._raw_form()
        natural = self.denormalise(self.decode(ids, **kwargs))
        return [form.from_natural(x) for x in natural.cpu()]

    # ------------------------------------------------------------------------------------------ ml-4m's interface
    def tokenize(self, x: torch.Tensor) -> torch.Tensor:
        """ml-4m's ``tokenize``: ``x`` normalised as ml-4m expects; ``(B, H, W)`` ids, ``(B, heads, 1, 1)`` for MLP
        tokenizers."""
        return self.module.tokenize(x)

    def encode(self, x: torch.Tensor) -> Any:
        """ml-4m's ``encode``: ``(quant, code_loss, tokens)``."""
        return self.module.encode(x)

    def decode_tokens(self, tokens: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """ml-4m's ``decode_tokens``; kwargs pass through (DiVAE: ``timesteps``, ``generator``, ``image_size``,
        ``scheduler``, ``verbose``, ``scheduler_timesteps_mode``)."""
        return self.module.decode_tokens(tokens, **kwargs)

    def decode_quant(self, quant: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """ml-4m's ``decode_quant``."""
        return self.module.decode_quant(quant, **kwargs)

    def autoencode(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """ml-4m's ``autoencode``."""
        return self.module.autoencode(x, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The module's ``forward`` (DiVAE: ``input_clean=``, ``input_noised=``, ``timesteps=``)."""
        return self.module(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # the rest of ml-4m's surface (tokens_to_embedding, quantize, encoder, decoder...) as the module has it
        if name.startswith("_") or name in ("module", "hub_config", "config"):
            raise AttributeError(name)
        return getattr(self.module, name)

    def __repr__(self) -> str:
        return (
            f"OfficialTokenizer({self.name!r}, hub_id={self.config.hub_id!r}, "
            f"normalisation={self.config.normalisation.value!r}, module={type(self.module).__name__})"
        )
