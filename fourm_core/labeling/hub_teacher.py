"""The batched labeler base of hub teachers, :class:`HubTeacher` (public as ``fourm_core.labeling.hub.HubTeacher``
and ``fp.HubTeacher``): weights resolved once, device and precision from the run options, images resized once per
resolution per batch, bad samples isolated, provenance written. Torch is imported only when a teacher runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fourm_core.labeling.api import BatchLabeler, LabelContext, LabelError, SampleView
from fourm_core.labeling.hub import HubModel, load_hub_model, resolve_device, teacher_options
from fourm_core.spec import ModalitySpec

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

__all__ = ["HubTeacher"]


def _snapshot_commit(path: Path | None) -> str | None:
    """The commit a hub-cache snapshot folder is filed under (``.../snapshots/<commit>``), else None."""
    if path is not None and path.parent.name == "snapshots":
        return path.name
    return None


class HubTeacher(BatchLabeler):
    """Base of labelers that run a hub teacher over each sample's image, in batches (see the module docstring).

    Subclasses implement :meth:`build` (the network from a local snapshot folder, or from a small built-in config
    when ``path`` is None: the random-init stand-in; it runs under a fixed seed) and :meth:`infer` (one value per
    sample of a batch, or a :class:`LabelError` for a sample that cannot be labelled), and usually :meth:`dims` and
    :meth:`extra_provenance`. The image is the sample's uint8 HxWx3 array: of ``image_modality`` / ``image_array``
    when given, else of the first modality this one depends on (``depends_on`` then ``uses``) that stores one, else
    the first source field that holds one.
    """

    #: Bumped when outputs change; part of the provenance and of the resume check.
    version = "1"
    #: Seed of the random-init stand-in (and of any randomness in :meth:`build`).
    seed = 0
    #: How bf16 / fp16 apply: ``"cast"`` (weights and inputs in that dtype), ``"autocast"`` (torch.autocast), or
    #: None: cast on cuda, autocast on cpu (where half-precision weights are slow or unsupported).
    precision: Literal["cast", "autocast"] | None = None

    def __init__(
        self,
        spec: ModalitySpec,
        context: LabelContext,
        model: HubModel | Mapping[str, Any],
        resolution: int,
        batch_size: int = 8,
        *,
        image_modality: str | None = None,
        image_array: str | None = None,
    ) -> None:
        from fourm_core.labeling.teachers import configure_torch_threads

        if resolution <= 0 or batch_size <= 0:
            raise ValueError(f"resolution {resolution} and batch_size {batch_size} must be positive")
        self.spec, self.context = spec, context
        self.hub = model if isinstance(model, HubModel) else HubModel.model_validate(model)
        self.model_id = self.hub.model_id
        self.resolution = int(resolution)
        self.batch_size = int(batch_size)
        self.options = teacher_options(context.options)
        self.device = resolve_device(self.options.device)
        self.dtype = self.options.dtype
        self.path = load_hub_model(self.hub, context.options)
        self.commit = _snapshot_commit(self.path)
        self.threads = configure_torch_threads(context.options)
        self.image_source = self._image_source(image_modality, image_array)
        self._network: Any = None
        self._pixels: dict[int, torch.Tensor] = {}
        self._resized: dict[tuple[int, int], torch.Tensor] = {}

    # -- what subclasses implement -------------------------------------------------------------------------------

    def build(self, path: Path | None) -> Any:
        """The teacher network from the snapshot folder ``path``, or, when ``path`` is None, the same class from a
        small built-in config (random-init stand-in; runs under ``torch.manual_seed(self.seed)``)."""
        raise NotImplementedError

    def infer(self, batch: torch.Tensor, samples: Sequence[SampleView]) -> list[dict[str, np.ndarray] | LabelError]:
        """One value (the modality's raw arrays) or LabelError per sample of ``batch`` ((B, 3, S, S) in [0, 1] at
        ``self.resolution``, on ``self.device``); runs under ``torch.inference_mode`` and the run's precision."""
        raise NotImplementedError

    def extra_provenance(self) -> dict[str, Any]:
        """The subclass's own provenance keys (layer, normalisation, thresholds, class mapping)."""
        return {}

    def dims(self) -> dict[str, int]:
        """Sizes of symbolic storage dimensions; empty by default."""
        return {}

    # -- the network ---------------------------------------------------------------------------------------------

    @property
    def random_init(self) -> bool:
        """Whether this run uses the random-init stand-in instead of real weights."""
        return self.path is None

    @property
    def torch_dtype(self) -> torch.dtype:
        """The run's precision as a torch dtype."""
        from fourm_core.devices import DTYPES

        return DTYPES[self.dtype]

    @property
    def cast(self) -> bool:
        """Whether weights and inputs are cast to the run's dtype (else autocast, or fp32)."""
        if self.dtype == "fp32":
            return False
        return (self.precision or ("cast" if self.device != "cpu" else "autocast")) == "cast"

    @property
    def network(self) -> Any:
        """The teacher (built, placed and cast on first use, so declaring a run costs nothing)."""
        if self._network is None:
            import torch

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                net = self.build(self.path)
            if isinstance(net, torch.nn.Module):
                net.eval().requires_grad_(False)
                net.to(self.device)
                if self.cast:
                    net.to(self.torch_dtype)
            self._network = net
        return self._network

    @contextlib.contextmanager
    def compute(self) -> Iterator[None]:
        """``torch.inference_mode`` plus autocast when the run's precision asks for it."""
        import torch

        with torch.inference_mode():
            if self.dtype != "fp32" and not self.cast:
                with torch.autocast(device_type=self.device, dtype=self.torch_dtype):
                    yield
            else:
                yield

    # -- images --------------------------------------------------------------------------------------------------

    def _image_source(self, modality: str | None, array: str | None) -> tuple[str, str] | None:
        if modality is not None:
            mod = self.context.modalities.get(modality)
            if array is None and mod is not None:
                array = next((a.name for a in mod.storage if _is_image_array(a)), None)
            if array is None:
                raise ValueError(f"{self.spec.name}: say which array of {modality!r} holds the image (image_array)")
            return modality, array
        for name in (*self.spec.depends_on, *self.spec.uses):
            mod = self.context.modalities.get(name)
            found = next((a.name for a in mod.storage if _is_image_array(a)), None) if mod else None
            if found:
                return name, found
        return None

    def image_of(self, sample: SampleView) -> np.ndarray:
        """The sample's uint8 HxWx3 image (LabelError when it is missing or malformed)."""
        import numpy as np

        if self.image_source is not None:
            modality, array = self.image_source
            value = sample.get(modality).get(array)
            where = f"{modality}.{array}"
        else:
            where, value = next(
                ((f, sample.source[f]) for f in sample.source if _looks_like_image(sample.source[f])),
                ("an image source field", None),
            )
        if value is None:
            raise LabelError(f"sample {sample.index}: no image ({where} is missing)")
        image = np.asarray(value)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
            raise LabelError(
                f"sample {sample.index}: {where} should be a uint8 HxWx3 image, got {image.dtype} {tuple(image.shape)}"
            )
        return image

    def images(self, samples: Sequence[SampleView], size: int) -> torch.Tensor:
        """(B, 3, size, size) float images in [0, 1] on the teacher's device (in its dtype when cast): each sample's
        image resized once per size per batch (bicubic, antialiased), whatever number of times it is asked for."""
        import torch
        import torch.nn.functional as F

        out = []
        for sample in samples:
            key = (sample.index, size)
            if key not in self._resized:
                if sample.index not in self._pixels:
                    self._pixels[sample.index] = _to_float(self.image_of(sample))
                x = self._pixels[sample.index]
                if x.shape[-2:] != (size, size):
                    x = F.interpolate(x[None], size=(size, size), mode="bicubic", align_corners=False, antialias=True)[
                        0
                    ].clamp_(0.0, 1.0)
                self._resized[key] = x
            out.append(self._resized[key])
        batch = torch.stack(out).to(self.device)
        return batch.to(self.torch_dtype) if self.cast else batch

    def normalise(self, batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
        """``(batch - mean) / std`` per channel, in the batch's dtype and on its device (a teacher's input
        normalisation: ImageNet's, CLIP's ...)."""
        import torch

        m = torch.tensor(tuple(mean), dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
        s = torch.tensor(tuple(std), dtype=batch.dtype, device=batch.device).view(1, -1, 1, 1)
        return (batch - m) / s

    @staticmethod
    def to_numpy(tensor: torch.Tensor, dtype: Any = None) -> np.ndarray:
        """A teacher output as a numpy array on the host (through float32, so bf16 outputs convert), cast to
        ``dtype`` when given."""
        array = tensor.detach().float().cpu().numpy()
        return array.astype(dtype) if dtype is not None else array

    # -- labeling ------------------------------------------------------------------------------------------------

    def label_batch(self, samples: Sequence[SampleView]) -> list[dict[str, Any] | LabelError]:
        """Label a block: samples without a usable image fail alone, the rest go through :meth:`infer` in batches
        of ``batch_size``; a LabelError raised for a whole batch is narrowed down by labeling its samples alone."""
        out: list[dict[str, Any] | LabelError | None] = [None] * len(samples)
        ready: list[int] = []
        try:
            for i, sample in enumerate(samples):
                try:
                    self._pixels[sample.index] = _to_float(self.image_of(sample))
                    ready.append(i)
                except LabelError as exc:
                    out[i] = exc
            for start in range(0, len(ready), self.batch_size):
                chunk = ready[start : start + self.batch_size]
                for i, value in zip(chunk, self._run([samples[i] for i in chunk])):
                    out[i] = value
        finally:
            self._pixels.clear()
            self._resized.clear()
        return out  # type: ignore[return-value]

    def _run(self, samples: list[SampleView]) -> list[dict[str, Any] | LabelError]:
        network = self.network  # built outside the compute context (inference tensors cannot be trained, cast...)
        del network
        try:
            with self.compute():
                values = list(self.infer(self.images(samples, self.resolution), samples))
        except LabelError as exc:
            if len(samples) == 1:
                return [exc]
            return [value for sample in samples for value in self._run([sample])]
        if len(values) != len(samples):
            raise RuntimeError(f"{type(self).__name__}.infer gave {len(values)} values for {len(samples)} samples")
        for value in values:
            if not isinstance(value, dict | LabelError):
                raise TypeError(f"{type(self).__name__}.infer must give dicts or LabelErrors, not {type(value)}")
        return values

    def provenance(self) -> dict[str, Any]:
        """Model id, revision and commit, resolution, dtype, device, and whether the weights are real."""
        return {
            "teacher": self.model_id,
            "library": self.hub.library,
            "revision": self.hub.revision or "main",
            "commit": self.commit,
            "resolution": self.resolution,
            "dtype": self.dtype,
            "device": self.device,
            "batch_size": self.batch_size,
            "weights": f"random-init (seed {self.seed})" if self.random_init else "hub",
            "weights_source": "random" if self.random_init else "hub",
            **({"note": self.hub.note} if self.hub.note else {}),
            **self.extra_provenance(),
        }


def _is_image_array(array: Any) -> bool:
    shape = tuple(array.shape)
    return array.dtype == "uint8" and len(shape) == 3 and shape[-1] == 3 and getattr(array, "form", "raw") == "raw"


def _looks_like_image(value: Any) -> bool:
    dtype, shape = getattr(value, "dtype", None), getattr(value, "shape", ())
    return str(dtype) == "uint8" and len(shape) == 3 and shape[-1] == 3


def _to_float(image: np.ndarray) -> torch.Tensor:
    import numpy as np
    import torch

    # a copy when the stored array is read-only (zarr hands those out): torch warns on non-writable arrays
    array = image if image.flags.writeable and image.flags.c_contiguous else np.array(image)
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)
