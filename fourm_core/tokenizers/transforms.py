"""Generic input handling of tokenizers: stored arrays <-> tensors, reconstruction loss and bound metrics.

A plugin picks one transform by name in its ``TokenizerConfig.transform``; nothing here names a modality. Each
transform knows three things about a kind of data:

- ``to_tensor`` / ``to_raw``: the stored per-sample array (e.g. ``(H, W)`` metric depth, ``(h, w, C)`` float16
  features) to the tokenizer's float tensor ``(C, H, W)`` or ``(D,)``, and back to the stored form;
- ``loss``: the reconstruction loss the paper uses for that kind (MSE, smooth-L1, cross-entropy, BCE, cosine);
- ``metrics``: the quality of a reconstruction measured in the stored form (PSNR, abs-rel, angle error, mIoU, F1,
  cosine, IoU), used for the tokenizer bound table and for the model's evaluation later.

Transforms with dataset statistics (feature and vector standardisation) learn them in ``fit`` and keep them as
tensors that are saved with the tokenizer weights.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["TRANSFORMS", "Transform", "make_transform"]


class Transform(ABC):
    """Base class; subclasses set ``name`` and implement the four abstract methods."""

    name: ClassVar[str]
    #: whether the model sees class indices (embedded) rather than float channels
    categorical: ClassVar[bool] = False
    #: how a crop is resampled (None: the data cannot be cropped, e.g. global vectors); nearest keeps classes,
    #: binary maps and invalid-depth zeros intact
    resample: ClassVar[str | None] = None
    #: channels that change sign under a horizontal flip (the x component of camera-frame vectors)
    flip_negates: ClassVar[tuple[int, ...]] = ()

    def __init__(self, channels: int, num_classes: int | None = None) -> None:
        self.channels = channels
        self.num_classes = num_classes
        self.stats: dict[str, torch.Tensor] = {}

    # -- statistics ------------------------------------------------------------------------------------------------
    def fit(self, raws: Sequence[np.ndarray]) -> None:  # noqa: B027 (a hook most transforms do not need)
        """Learn dataset statistics from training arrays (most transforms need none)."""

    # -- conversion ------------------------------------------------------------------------------------------------
    @abstractmethod
    def to_tensor(self, raw: np.ndarray) -> torch.Tensor:
        """See the module docstring."""

    @abstractmethod
    def to_raw(self, tensor: torch.Tensor) -> np.ndarray:
        """See the module docstring."""

    def batch(self, raws: Sequence[np.ndarray]) -> torch.Tensor:
        """Stack converted samples into one batch tensor."""
        return torch.stack([self.to_tensor(np.asarray(r)) for r in raws])

    @property
    def out_channels(self) -> int:
        """Channels the decoder predicts (logits for categorical transforms)."""
        return self.num_classes if self.categorical and self.num_classes else self.channels

    def prediction(self, output: torch.Tensor) -> torch.Tensor:
        """Decoder output to the model-space tensor ``to_raw`` expects (identity, argmax or sigmoid)."""
        return output

    # -- training and evaluation -----------------------------------------------------------------------------------
    @abstractmethod
    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """See the module docstring."""

    @abstractmethod
    def metrics(self, true: Sequence[np.ndarray], pred: Sequence[np.ndarray]) -> dict[str, float]:
        """Reconstruction quality over a set of samples, in the stored form."""

    def baseline(self, train: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
        """The trivial reconstruction a bound must beat: the training mean (or majority) for every sample."""
        mean = np.mean(np.stack([np.asarray(r, np.float64) for r in train]), axis=0)
        return [mean.astype(np.asarray(train[0]).dtype)] * n

    # -- ensembling ------------------------------------------------------------------------------------------------
    def fuse(self, raws: Sequence[np.ndarray]) -> np.ndarray:
        """One value from N decoded generations of the same condition (the paper's ensembling): the per-element
        mean, in the stored dtype (rounded for integer data). Classes and binary maps vote instead, unit vectors
        are renormalised: a mean of class ids or of directions is not a class or a direction."""
        stack = _stack(raws)
        mean = stack.astype(np.float64).mean(axis=0)
        if np.issubdtype(stack.dtype, np.integer):
            mean = np.rint(mean)
        return mean.astype(stack.dtype)


# ---------------------------------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------------------------------


def _stack(raws: Sequence[np.ndarray]) -> np.ndarray:
    if not len(raws):
        raise ValueError("nothing to fuse")
    arrays = [np.asarray(r) for r in raws]
    if any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError(f"cannot fuse arrays of shapes {sorted({a.shape for a in arrays})}")
    return np.stack(arrays)


def _majority(stack: np.ndarray) -> np.ndarray:
    """Per-element most frequent value along axis 0 of an integer stack (ties: the smallest value)."""
    values = stack.astype(np.int64)
    low = int(values.min())
    shifted = (values - low).reshape(len(values), -1)
    counts = np.zeros((int(shifted.max()) + 1, shifted.shape[1]), dtype=np.int64)
    np.add.at(counts, (shifted, np.arange(shifted.shape[1])[None, :]), 1)
    return (counts.argmax(0) + low).reshape(stack.shape[1:])


def _binary_majority(raws: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 0/1: set where more than half of the binary maps are set."""
    return ((_stack(raws) > 0).mean(axis=0) > 0.5).astype(np.uint8)


def chw(raw: np.ndarray) -> torch.Tensor:
    """A stored (H, W) or (H, W, C) array as a float (C, H, W) tensor."""
    t = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32))
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)


def hwc(t: torch.Tensor) -> np.ndarray:
    """A (C, H, W) tensor back as the stored (H, W) or (H, W, C) array."""
    t = t.detach().float().cpu()
    return (t[0] if t.shape[0] == 1 else t.permute(1, 2, 0)).numpy()


class RGB(Transform):
    """Colour images (uint8 0..255, or float 0..1 like albedo) in [-1, 1], MSE, PSNR."""

    name = "color"
    resample = "bilinear"

    def to_tensor(self, raw: np.ndarray) -> torch.Tensor:
        scale = 255.0 if raw.dtype == np.uint8 else 1.0
        return chw(raw.astype(np.float32) / scale) * 2 - 1

    def to_raw(self, tensor: torch.Tensor) -> np.ndarray:
        return np.clip(np.rint((hwc(tensor) + 1) * 127.5), 0, 255).astype(np.uint8)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target)

    def metrics(self, true: Sequence[np.ndarray], pred: Sequence[np.ndarray]) -> dict[str, float]:
        psnr = []
        for t, p in zip(true, pred, strict=True):
            t8 = t.astype(np.float64) * (255.0 if t.dtype != np.uint8 else 1.0)
            p8 = p.astype(np.float64) * (255.0 if p.dtype != np.uint8 else 1.0)
            mse = max(float(np.mean((t8 - p8) ** 2)), 1e-10)
            psnr.append(10 * np.log10(255.0**2 / mse))
        return {"psnr": float(np.mean(psnr))}


class RobustDepth(Transform):
    """Metric depth (0 = invalid) as *log* depth standardised per image by the mean and spread of its 10%..90% band.

    ml-4m standardises linear depth the same way; fourm uses log depth because scenes span two orders of magnitude
    (2 m to the horizon at 200+ m): in linear units the far tail dominates the loss and the near field, where
    relative errors matter, gets few codes. Scale and shift are not in the tokens, so metrics first align the
    reconstruction to the truth by least squares in log depth (scale and shift), then measure abs-rel and delta1 on
    valid pixels in metres: the usual protocol for relative depth."""

    name = "robust_depth"
    resample = "nearest"

    def to_tensor(self, raw: np.ndarray) -> torch.Tensor:
        d = raw.astype(np.float32)
        valid = d > 0
        if valid.sum() < 2:
            return torch.zeros(1, *d.shape)
        v = np.log(d[valid])
        lo, hi = np.percentile(v, [10, 90])
        band = v[(v >= lo) & (v <= hi)]
        band = band if band.size > 1 else v
        std = max(float(band.std()), 1e-3)
        out = np.zeros_like(d)
        out[valid] = (v - float(band.mean())) / std
        return chw(out)

    def to_raw(self, tensor: torch.Tensor) -> np.ndarray:
        return hwc(tensor).astype(np.float32)  # standardised log depth: metres only after alignment

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.smooth_l1_loss(output, target)

    @staticmethod
    def align(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
        """``pred`` (standardised log depth) mapped to metres by the least-squares scale and shift in log depth."""
        valid = true > 0
        x, y = pred[valid].astype(np.float64), np.log(true[valid].astype(np.float64))
        (scale, shift), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), y, rcond=None)
        return np.where(valid, np.exp(scale * pred + shift), 0.0)

    def metrics(self, true: Sequence[np.ndarray], pred: Sequence[np.ndarray]) -> dict[str, float]:
        abs_rel, delta1 = [], []
        for t, p in zip(true, pred, strict=True):
            valid = t > 0
            if valid.sum() < 2:
                continue
            y, aligned = t[valid].astype(np.float64), self.align(p, t)[valid]
            abs_rel.append(float(np.mean(np.abs(aligned - y) / y)))
            delta1.append(float(np.mean(np.maximum(aligned / y, y / aligned) < 1.25)))
        return {"abs_rel": float(np.mean(abs_rel)), "delta1": float(np.mean(delta1))}

    def baseline(self, train: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
        mean = np.mean(np.stack([self.to_tensor(np.asarray(r))[0].numpy() for r in train]), axis=0)
        return [mean.astype(np.float32)] * n


class UnitVectors(Transform):
    """Surface normals (unit vectors, HxWx3 in [-1, 1]); metric: mean angle error in degrees."""

    name = "unit_vectors"
    resample = "bilinear"
    flip_negates = (0,)

    def to_tensor(self, raw: np.ndarray) -> torch.Tensor:
        return chw(raw)

    def to_raw(self, tensor: torch.Tensor) -> np.ndarray:
        # unit vectors where the decoder is confident; the store marks "no surface" (sky) with zero vectors, and
        # short outputs stay short there instead of being normalised into random directions (metrics normalise)
        t = tensor.detach().float()
        norm = t.norm(dim=0, keepdim=True)
        return torch.where(norm < 0.25, t, t / norm.clamp_min(1e-6)).permute(1, 2, 0).cpu().numpy()

    def fuse(self, raws: Sequence[np.ndarray]) -> np.ndarray:
        # the mean direction, renormalised like a decoder output (short where the draws disagree or see no surface)
        mean = _stack(raws).astype(np.float32).mean(axis=0)
        return self.to_raw(chw(mean)).astype(np.asarray(raws[0]).dtype)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target)

    def metrics(self, true: Sequence[np.ndarray], pred: Sequence[np.ndarray]) -> dict[str, float]:
        errs = []
        for t, p in zip(true, pred, strict=True):
            t = t.astype(np.float64)
            p = p.astype(np.float64)
            valid = np.linalg.norm(t, axis=-1) > 0.5
            tn = t / np.maximum(np.linalg.norm(t, axis=-1, keepdims=True), 1e-8)
            pn = p / np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), 1e-8)
            cos = np.clip((tn * pn).sum(-1), -1, 1)
            errs.append(np.degrees(np.arccos(cos))[valid])
        e = np.concatenate(errs)
        return {"mean_angle_deg": float(e.mean()), "within_11.25": float(np.mean(e < 11.25))}


class Classes(Transform):
    """Class maps (int HxW) embedded by class; cross-entropy; metric: mIoU over classes seen in truth or output."""

    name = "classes"
    resample = "nearest"
    categorical = True

    def to_tensor(self, raw: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(raw, np.int64))

    def to_raw(self, tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().cpu().numpy().astype(np.int16)

    def prediction(self, output: torch.Tensor) -> torch.Tensor:
        return output.argmax(1)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # flatten channel-last: free for the decoder's channel-first view of channel-last logits
        logits = output.permute(0, 2, 3, 1).reshape(-1, output.shape[1])
        return F.cross_entropy(logits, target.reshape(-1))

    def metrics(self, true: Sequence[np.ndarray], pred: Sequence[np.ndarray]) -> dict[str, float]:
        t = np.concatenate([np.asarray(x).reshape(-1) for x in true]).astype(np.int64)
        p = np.concatenate([np.asarray(x).reshape(-1) for x in pred]).astype(np.int64)
        n = int(max(t.max(), p.max()) + 1)
        confusion = np.bincount(t * n + p, minlength=n * n).reshape(n, n)
        inter = np.diag(confusion).astype(np.float64)
        union = confusion.sum(0) + confusion.sum(1) - inter
        seen = union > 0
        return {"miou": float(np.mean(inter[seen] / union[seen])), "pixel_acc": float(inter.sum() / len(t))}

    def baseline(self, train: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
        return [_majority(_stack(train)).astype(np.int16)] * n

    def fuse(self, raws: Sequence[np.ndarray]) -> np.ndarray:
        stack = _stack(raws)
        return _majority(stack).astype(stack.dtype)


class Edges(Transform):
    """Binary edge maps (uint8 0/255) in [-1, 1] with smooth-L1 as in ml-4m; metric: F1 with a 1-pixel tolerance
    (an edge pixel counts as matched when the other map has an edge within its 3x3 neighbourhood)."""

    name = "edges"
    resample = "nearest"

    def to_tensor(self, raw: np.ndarray) -> torch.Tensor:
        return chw((np.asarray(raw) > 0).astype(np.float32) * 2 - 1)

    def to_raw(self, tensor: torch.Tensor) -> np.ndarray:
        return ((hwc(tensor) > 0).astype(np.uint8)) * 255

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.smooth_l1_loss(output, target)

    def metrics(self, true: Sequence[np.ndarray], pred: Sequence[np.ndarray]) -> dict[str, float]:
        from scipy.ndimage import binary_dilation

        tp_p = tp_t = exact = n_p = n_t = 0
        for t, p in zip(true, pred, strict=True):
            t, p = np.asarray(t) > 0, np.asarray(p) > 0
            tp_p += int((p & binary_dilation(t)).sum())
            tp_t += int((t & binary_dilation(p)).sum())
            exact += int((p & t).sum())
            n_p, n_t = n_p + int(p.sum()), n_t + int(t.sum())

        def f1(precision: float, recall: float) -> float:
            return 2 * precision * recall / (precision + recall) if precision + recall else 0.0

        precision = tp_p / n_p if n_p else 0.0
        recall = tp_t / n_t if n_t else 0.0
        # the tolerant F1 forgives thick edges near true ones; the exact-pixel F1 does not
        exact_f1 = f1(exact / n_p if n_p else 0.0, exact / n_t if n_t else 0.0)
        return {"f1": f1(precision, recall), "precision": precision, "recall": recall, "f1_exact": exact_f1}

    def baseline(self, train: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
        return [_binary_majority(train) * np.uint8(255)] * n

    def fuse(self, raws: Sequence[np.ndarray]) -> np.ndarray:
        return _binary_majority(raws) * np.uint8(255)


class Features(Transform):
    """Teacher feature maps (h x w x C), standardised per channel with training statistics; smooth-L1; metric:
    mean cosine similarity per position (and the share of variance explained)."""

    name = "features"
    resample = "bilinear"

    def fit(self, raws: Sequence[np.ndarray]) -> None:
        x = np.concatenate([np.asarray(r, np.float32).reshape(-1, self.channels) for r in raws])
        self.stats = {"mean": torch.from_numpy(x.mean(0)), "std": torch.from_numpy(x.std(0) + 1e-4)}

    def to_tensor(self, raw: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.asarray(raw, np.float32))
        if self.stats:
            x = (x - self.stats["mean"]) / self.stats["std"]
        return x.permute(2, 0, 1)

    def to_raw(self, tensor: torch.Tensor) -> np.ndarray:
        x = tensor.detach().float().cpu().permute(1, 2, 0)
        if self.stats:
            x = x * self.stats["std"] + self.stats["mean"]
        return x.numpy().astype(np.float16)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.smooth_l1_loss(output, target)

    def metrics(self, true: Sequence[np.ndarray], pred: Sequence[np.ndarray]) -> dict[str, float]:
        t = np.concatenate([np.asarray(x, np.float64).reshape(-1, x.shape[-1]) for x in true])
        p = np.concatenate([np.asarray(x, np.float64).reshape(-1, x.shape[-1]) for x in pred])
        cos = (t * p).sum(1) / np.maximum(np.linalg.norm(t, axis=1) * np.linalg.norm(p, axis=1), 1e-8)
        r2 = 1 - ((t - p) ** 2).sum() / max(((t - t.mean(0)) ** 2).sum(), 1e-12)
        return {"cosine": float(cos.mean()), "r2": float(r2)}


class Embedding(Transform):
    """Global embeddings (C,), l2-normalised; cosine loss; metric: cosine similarity (kNN agreement is computed by
    the evaluation, which needs a reference bank)."""

    name = "embedding"

    def to_tensor(self, raw: np.ndarray) -> torch.Tensor:
        return F.normalize(torch.from_numpy(np.asarray(raw, np.float32)), dim=0)

    def to_raw(self, tensor: torch.Tensor) -> np.ndarray:
        return F.normalize(tensor.detach().float().cpu(), dim=-1).numpy()

    def fuse(self, raws: Sequence[np.ndarray]) -> np.ndarray:
        return self.to_raw(torch.from_numpy(_stack(raws).astype(np.float32).mean(axis=0)))

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (1 - F.cosine_similarity(output, target, dim=-1)).mean()

    def metrics(self, true: Sequence[np.ndarray], pred: Sequence[np.ndarray]) -> dict[str, float]:
        t = np.stack([np.asarray(x, np.float64) for x in true])
        p = np.stack([np.asarray(x, np.float64) for x in pred])
        cos = (t * p).sum(1) / np.maximum(np.linalg.norm(t, axis=1) * np.linalg.norm(p, axis=1), 1e-8)
        return {"cosine": float(cos.mean())}


class Vectors(Transform):
    """Parameter vectors (e.g. 207 pose rotation entries), standardised per dimension; smooth-L1; metric: mean
    absolute error in the stored units (plugins add their own, e.g. joint position error)."""

    name = "vectors"

    def fit(self, raws: Sequence[np.ndarray]) -> None:
        x = np.stack([np.asarray(r, np.float32).reshape(-1) for r in raws])
        self.stats = {"mean": torch.from_numpy(x.mean(0)), "std": torch.from_numpy(x.std(0) + 1e-3)}

    def to_tensor(self, raw: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.asarray(raw, np.float32).reshape(-1))
        return (x - self.stats["mean"]) / self.stats["std"] if self.stats else x

    def to_raw(self, tensor: torch.Tensor) -> np.ndarray:
        x = tensor.detach().float().cpu()
        return (x * self.stats["std"] + self.stats["mean"] if self.stats else x).numpy()

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.smooth_l1_loss(output, target)

    def metrics(self, true: Sequence[np.ndarray], pred: Sequence[np.ndarray]) -> dict[str, float]:
        t = np.stack([np.asarray(x, np.float64) for x in true])
        p = np.stack([np.asarray(x, np.float64) for x in pred])
        return {"mae": float(np.abs(t - p).mean())}


class Masks(Transform):
    """Binary masks (S x S, 0/1) as one channel; BCE on logits; metric: mean IoU per mask."""

    name = "masks"

    def to_tensor(self, raw: np.ndarray) -> torch.Tensor:
        return chw((np.asarray(raw) > 0).astype(np.float32))

    def to_raw(self, tensor: torch.Tensor) -> np.ndarray:
        return (hwc(tensor) > 0.5).astype(np.uint8)

    def prediction(self, output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(output, target)

    def metrics(self, true: Sequence[np.ndarray], pred: Sequence[np.ndarray]) -> dict[str, float]:
        ious = []
        for t, p in zip(true, pred, strict=True):
            t, p = np.asarray(t) > 0, np.asarray(p) > 0
            union = (t | p).sum()
            ious.append(float((t & p).sum() / union) if union else 1.0)
        return {"iou": float(np.mean(ious))}

    def baseline(self, train: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
        return [_binary_majority(train)] * n

    def fuse(self, raws: Sequence[np.ndarray]) -> np.ndarray:
        return _binary_majority(raws)


TRANSFORMS: dict[str, type[Transform]] = {
    t.name: t for t in (RGB, RobustDepth, UnitVectors, Classes, Edges, Features, Embedding, Vectors, Masks)
}


def make_transform(name: str, channels: int, num_classes: int | None = None, **_: Any) -> Transform:
    """The transform called ``name`` (a clear error lists the known ones)."""
    try:
        cls = TRANSFORMS[name]
    except KeyError:
        raise ValueError(f"unknown tokenizer transform {name!r}; known: {', '.join(sorted(TRANSFORMS))}") from None
    return cls(channels, num_classes)
