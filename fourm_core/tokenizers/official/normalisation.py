"""The input normalisations ml-4m applies before its official tokenizers, and the way fourm's stored arrays reach them.

Two small tables, each keyed by a closed vocabulary:

- :data:`NORMALISERS` (by :class:`~fourm_core.spec.Normalisation`): the *natural* tensor (pixels in [0, 1], depth in
  any linear unit, COCO class ids with 255 = unlabelled, features as the teacher emits them) to what ml-4m's tokenizer
  takes, and back. Each is written after the ml-4m transform named in its docstring (``fourm/data/
  modality_transforms.py``), numerically the same: the torchvision ``normalize`` of ``RGBTransform`` and
  ``NormalTransform`` is ``(x - mean) / std`` per channel, written out here in two lines rather than importing
  torchvision, which fourm does not otherwise need.
- :data:`RAW_FORMS` (by the plugin's ``TokenizerConfig.transform``, the same names as
  :mod:`fourm_core.tokenizers.transforms`): a stored per-sample array (``(H, W, 3)`` uint8 RGB, ``(H, W)`` 0/255
  edges, ``(H, W, 3)`` unit normals, ...) to the natural tensor, and a decoded tensor back to the stored form.

:class:`~fourm_core.tokenizers.official.adapter.OfficialTokenizer` composes the two, so ``encode_raw`` /
``decode_raw`` speak fourm's stored arrays while ``tokenize`` / ``decode_tokens`` keep ml-4m's tensors unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from fourm_core.spec.official import Normalisation
from fourm_core.tokenizers.transforms import chw, hwc

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NORMALISERS",
    "RAW_FORMS",
    "Normaliser",
    "RawForm",
    "robust_depth_stats",
]

#: ``IMAGENET_DEFAULT_MEAN`` / ``IMAGENET_DEFAULT_STD`` of ml-4m's ``fourm/utils/data_constants.py`` (timm's values)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ``DepthTransform.truncated_depth_standardization``: the share cut at each end, and the variance floor
DEPTH_BAND = 0.1
DEPTH_EPS = 1e-6


def _per_channel(x: torch.Tensor, values: tuple[float, ...]) -> torch.Tensor:
    """``values`` shaped to broadcast over the channel axis of ``(C, H, W)`` or ``(B, C, H, W)``."""
    shape = [1] * x.ndim
    shape[-3] = len(values)
    return torch.tensor(values, dtype=x.dtype, device=x.device).reshape(shape)


def robust_depth_stats(depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ml-4m's truncated statistics of one depth map: the mean and ``sqrt(var + 1e-6)`` (unbiased variance) of the
    values ranked between 10% and 90%, cut by index as ``DepthTransform`` does (zeros, i.e. invalid pixels, count)."""
    flat = torch.sort(depth.reshape(-1).to(torch.float32))[0]
    n = flat.shape[0]
    band = flat[int(DEPTH_BAND * n) : int((1 - DEPTH_BAND) * n)]
    return band.mean(), torch.sqrt(band.var() + DEPTH_EPS)


@dataclass(frozen=True)
class Normaliser:
    """One ml-4m input normalisation: ``forward`` natural -> tokenizer space, ``inverse`` back.

    ``forward`` takes one sample ``(C, H, W)`` or a batch ``(B, C, H, W)`` (class maps: ``(H, W)`` / ``(B, H, W)``);
    ``inverse`` of :attr:`Normalisation.ROBUST_DEPTH` needs the per-sample ``stats`` ``forward`` used (from
    :func:`robust_depth_stats`) and returns the standardised depth unchanged without them (depth scale and shift are
    not in the tokens)."""

    name: Normalisation
    forward: Callable[[torch.Tensor], torch.Tensor]
    inverse: Callable[..., torch.Tensor]


def _minus_one_one(x: torch.Tensor) -> torch.Tensor:
    # RGBTransform(imagenet_default_mean_and_std=False): normalize with IMAGENET_INCEPTION_MEAN/STD = 0.5
    return (x.float() - 0.5) / 0.5


def _from_minus_one_one(x: torch.Tensor) -> torch.Tensor:
    return x * 0.5 + 0.5


def _imagenet(x: torch.Tensor) -> torch.Tensor:
    # RGBTransform(imagenet_default_mean_and_std=True)
    x = x.float()
    return (x - _per_channel(x, IMAGENET_MEAN)) / _per_channel(x, IMAGENET_STD)


def _from_imagenet(x: torch.Tensor) -> torch.Tensor:
    return x * _per_channel(x, IMAGENET_STD) + _per_channel(x, IMAGENET_MEAN)


def _robust_depth(x: torch.Tensor) -> torch.Tensor:
    # DepthTransform(standardize_depth=True); ml-4m first divides its 16-bit PNG by 2**16 - 1
    x = x.float() / (2**16 - 1.0) if x.dtype == torch.uint16 else x.float()
    samples = [x] if x.ndim <= 3 else list(x)
    out = []
    for depth in samples:
        mean, std = robust_depth_stats(depth)
        out.append((depth - mean) / std)
    return out[0] if x.ndim <= 3 else torch.stack(out)


def _from_robust_depth(x: torch.Tensor, stats: tuple[float, float] | None = None) -> torch.Tensor:
    if stats is None:
        return x
    mean, std = stats
    return x * std + mean


def _semseg_shift_one(x: torch.Tensor) -> torch.Tensor:
    # SemsegTransform(shift_idx_by_one=True): uint8 ``sample + 1``, so 255 (unlabelled) wraps to 0
    return (x.long() + 1) % 256


def _from_semseg_shift_one(x: torch.Tensor) -> torch.Tensor:
    return (x.long() - 1) % 256


def _identity(x: torch.Tensor, *_: object, **__: object) -> torch.Tensor:
    return x


NORMALISERS: dict[Normalisation, Normaliser] = {
    n.name: n
    for n in (
        Normaliser(Normalisation.MINUS_ONE_ONE, _minus_one_one, _from_minus_one_one),
        Normaliser(Normalisation.IMAGENET, _imagenet, _from_imagenet),
        Normaliser(Normalisation.ROBUST_DEPTH, _robust_depth, _from_robust_depth),
        # NormalTransform(standardize_surface_normals=False): mean = std = 0.5, the same arithmetic as [-1, 1] RGB
        Normaliser(Normalisation.NORMAL_HALF, _minus_one_one, _from_minus_one_one),
        Normaliser(Normalisation.SEMSEG_SHIFT_ONE, _semseg_shift_one, _from_semseg_shift_one),
        Normaliser(Normalisation.FEATURES, _identity, _identity),
        Normaliser(Normalisation.NONE, _identity, _identity),
    )
}


# ---------------------------------------------------------------------------------------------------------------------
# stored arrays <-> natural tensors
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawForm:
    """How a stored per-sample array becomes the natural tensor of its normalisation and back.

    ``to_natural(raw) -> tensor`` (``(C, H, W)``, ``(H, W)`` for classes, ``(C, 1, 1)`` for vectors);
    ``prediction(output)`` turns a decoder output batch into values of the tokenizer's space (class argmax, mask
    sigmoid), which the normaliser's inverse then maps to natural values;
    ``from_natural(tensor) -> array`` writes one sample in the stored dtype; ``vector`` says the tokenizer takes
    ``(B, C, 1, 1)`` and returns ``(B, heads, 1, 1)`` tokens (ml-4m's MLP tokenizers)."""

    name: str
    to_natural: Callable[[np.ndarray], torch.Tensor]
    from_natural: Callable[[torch.Tensor], np.ndarray]
    prediction: Callable[[torch.Tensor], torch.Tensor] = lambda output: output
    vector: bool = False


def _colour_in(raw: np.ndarray) -> torch.Tensor:
    return chw(raw.astype(np.float32) / (255.0 if raw.dtype == np.uint8 else 1.0))


def _colour_out(t: torch.Tensor) -> np.ndarray:
    return np.clip(np.rint(hwc(t.clamp(0, 1)) * 255.0), 0, 255).astype(np.uint8)


def _edges_in(raw: np.ndarray) -> torch.Tensor:
    return chw((np.asarray(raw) > 0).astype(np.float32))


def _edges_out(t: torch.Tensor) -> np.ndarray:
    # the edge tokenizer reads edges as RGB: average its channels, then threshold at mid-grey like fourm's Edges
    return (t.float().mean(0).cpu().numpy() > 0.5).astype(np.uint8) * np.uint8(255)


def _normals_in(raw: np.ndarray) -> torch.Tensor:
    # unit vectors in [-1, 1] to ml-4m's colour-coded normals in [0, 1] (PNG value / 255)
    return chw((np.asarray(raw, np.float32) + 1) / 2)


def _normals_out(t: torch.Tensor) -> np.ndarray:
    v = t.detach().float().cpu() * 2 - 1
    norm = v.norm(dim=0, keepdim=True)
    return torch.where(norm < 0.25, v, v / norm.clamp_min(1e-6)).permute(1, 2, 0).numpy()


def _classes_in(raw: np.ndarray) -> torch.Tensor:
    # fourm stores class + 1 with 0 = unlabelled, which is ml-4m's shifted form: the natural ids are one lower,
    # 255 for unlabelled, so that semseg_shift_one gives back exactly the stored values
    return (torch.from_numpy(np.asarray(raw, np.int64)) - 1) % 256


def _classes_out(t: torch.Tensor) -> np.ndarray:
    return ((t.long() + 1) % 256).cpu().numpy().astype(np.int16)


def _vector_in(raw: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(raw, np.float32).reshape(-1, 1, 1))


def _vector_out(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().reshape(-1).numpy()


def _features_out(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().permute(1, 2, 0).numpy().astype(np.float16)


def _masks_out(t: torch.Tensor) -> np.ndarray:
    return (hwc(t) > 0.5).astype(np.uint8)


RAW_FORMS: dict[str, RawForm] = {
    f.name: f
    for f in (
        RawForm("color", _colour_in, _colour_out),
        RawForm("edges", _edges_in, _edges_out),
        RawForm("unit_vectors", _normals_in, _normals_out),
        # standardised depth as decoded: scale and shift are not in the tokens (fourm's own tokenizer does the same)
        RawForm("robust_depth", chw, lambda t: hwc(t).astype(np.float32)),
        # the decoder gives logits over the shifted classes: argmax in the tokenizer space, then the inverse shift
        RawForm("classes", _classes_in, _classes_out, prediction=lambda out: out.argmax(1)),
        RawForm("features", chw, _features_out),
        # the teacher's CLS vector as stored, not l2-normalised: ml-4m tokenizes x_norm_clstoken as is
        RawForm("embedding", _vector_in, _vector_out, vector=True),
        RawForm("vectors", _vector_in, _vector_out, vector=True),
        # ml-4m's SAMInstanceTransform gives masks in {0, 1}; its VQ-VAE decodes logits (plotting: sigmoid)
        RawForm("masks", _edges_in, _masks_out, prediction=torch.sigmoid),
    )
}
