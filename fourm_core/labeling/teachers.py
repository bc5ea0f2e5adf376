"""Feature teachers: a timm ViT that turns a stored image into a patch-feature grid and a pooled (CLS) embedding.

Plugins configure one per modality with :class:`TeacherConfig` (which timm model, its patch size, the width of the
stored features, where the image comes from) and return :class:`FeatureTeacher` from their labeler factory. The
teacher never downloads anything. Weights are looked up, in order:

1. an explicit file: ``TeacherConfig.weights``, else the environment variable the plugin names in ``weights_env``
   (a ``.safetensors`` file, a timm / PyTorch checkpoint, or a downloaded timm model folder holding one); a path that
   is set but missing is an error;
2. the timm / Hugging Face cache, when the model's weight file is already there (looked up offline, nothing fetched);
3. otherwise, only when the run allows it (option ``allow_random_teachers``, ``--allow-random-teachers``; or forced
   with ``teacher_weights=random``), a seeded random-initialised teacher, optionally a smaller architecture
   (``fallback_model``) with the same patch size and a seeded random projection to the stored width, so CPU labeling
   stays fast. Its provenance says ``"weights": "random-init (seed N)"``, so nobody mistakes its features for a real
   teacher's. Without weights and without that option the modality is skipped when the run is planned
   (:func:`weights_status`), with the command that fetches the weights.

The image is resized to ``grid * patch_size`` pixels (the grid is the modality's preset grid), normalised with the
teacher's mean / std and run in batches under ``torch.inference_mode``. Outputs are ``(grid, grid, C)`` float16 patch
features and a ``(C,)`` float32 pooled embedding; the same input always gives bit-identical outputs (per sample, not
depending on what else is in the batch).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fourm_core.labeling.api import BatchLabeler, LabelContext, LabelError, SampleView
from fourm_core.labeling.common import TeacherConfig
from fourm_core.labeling.hub import ALLOW_RANDOM_OPTION, TeacherUnavailable, teacher_options
from fourm_core.labeling.hub import WEIGHTS_OPTION as _WEIGHTS_OPTION
from fourm_core.spec import ModalitySpec

__all__ = [
    "THREADS_OPTION",
    "WEIGHTS_OPTION",
    "FeatureTeacher",
    "TeacherConfig",
    "TeacherWeights",
    "configure_torch_threads",
    "resolve_weights",
    "weights_status",
]

#: Run option (``LabelContext.options``): ``"random"`` forces random-init teachers (tests, quick demos); ``"auto"``
#: (default) uses real weights when they are found (see also ``allow_random_teachers`` in :mod:`.hub`).
WEIGHTS_OPTION = _WEIGHTS_OPTION
#: Run option: torch threads per labeling process. Without it, ``workers`` (when given) splits the cores, and a
#: labeling worker process uses one thread.
THREADS_OPTION = "torch_threads"

#: Weight files a timm model's Hugging Face repository holds, in the order timm itself tries them.
_HUB_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class TeacherWeights:
    """Where the teacher's weights come from: ``file`` (explicit), ``cache`` (timm / HF cache) or ``random``."""

    kind: str
    path: str | None
    seed: int

    def describe(self) -> str:
        """What provenance records under ``weights``."""
        return f"random-init (seed {self.seed})" if self.kind == "random" else str(self.path)


def _hub_id(model: str) -> tuple[str | None, Any]:
    """The Hugging Face repo (``owner/name``, revision stripped) timm loads ``model``'s weights from, and its cfg."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    return (repo or None), cfg


def _cached_weights(model: str) -> str | None:
    """The model's weight file in the Hugging Face cache, if it is there (no network access)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        from fourm_core.hub import hub_cache_dir
    except ImportError:  # pragma: no cover - huggingface_hub comes with timm
        return None
    repo, cfg = _hub_id(model)
    if not repo:
        return None
    repo, _, revision = repo.partition("@")
    names = (cfg.hf_hub_filename, *_HUB_FILES) if getattr(cfg, "hf_hub_filename", None) else _HUB_FILES
    for name in names:
        try:
            found = try_to_load_from_cache(repo, name, cache_dir=hub_cache_dir(), revision=revision or None)
        except Exception:  # noqa: BLE001 - a malformed cache is "not cached"
            found = None
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def _explicit_weights(config: TeacherConfig) -> TeacherWeights | None:
    """The weight file the config or its environment variable names (None when neither is set); set but missing is
    an error."""
    explicit, origin = config.weights, "TeacherConfig.weights"
    if not explicit and config.weights_env:
        explicit, origin = os.environ.get(config.weights_env) or None, f"${config.weights_env}"
    if not explicit:
        return None
    path = Path(explicit).expanduser()
    if path.is_dir():  # a downloaded model folder: its weight file
        path = next((path / n for n in _HUB_FILES if (path / n).is_file()), path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{origin} names {str(path)!r}, which is not a weight file or a folder holding one "
            f"({', '.join(_HUB_FILES)}) (teacher {config.model})"
        )
    return TeacherWeights("file", str(path.resolve()), config.seed)


def _missing_reason(config: TeacherConfig) -> str:
    repo = (_hub_id(config.model)[0] or "").partition("@")[0]
    fetch = f"`hf download {repo}`" if repo else "the timm weights"
    env = f", or set ${config.weights_env} to a weight file" if config.weights_env else ""
    return (
        f"teacher {repo or config.model} has no weights here (not in the hub cache); fetch them with {fetch}{env} "
        f"(or allow random-init stand-ins with --allow-random-teachers, for tests)"
    )


def resolve_weights(config: TeacherConfig, options: Mapping[str, Any] | None = None) -> TeacherWeights:
    """Decide where the weights come from (cheap: no model is built, nothing downloaded). A set but missing file is
    an error; no weights at all is :class:`TeacherUnavailable` unless the run allows random-init teachers."""
    opts = teacher_options(options)
    if opts.force_random:
        return TeacherWeights("random", None, config.seed)
    explicit = _explicit_weights(config)
    if explicit is not None:
        return explicit
    if config.use_cache and (cached := _cached_weights(config.model)):
        return TeacherWeights("cache", cached, config.seed)
    if opts.allow_random_teachers:
        return TeacherWeights("random", None, config.seed)
    raise TeacherUnavailable(_missing_reason(config))


def weights_status(config: TeacherConfig, options: Mapping[str, Any] | None = None) -> tuple[str, str, str]:
    """``(status, reason, model id)`` of a feature teacher for the run plan: ``cached`` (an explicit file or the
    cache), ``random`` (forced or allowed with ``allow_random_teachers``) or ``missing`` (the reason says how to get
    the weights). The model id is the hub repo timm loads from (else the timm name)."""
    repo = (_hub_id(config.model)[0] or config.model).partition("@")[0]
    try:
        weights = resolve_weights(config, options)
    except TeacherUnavailable as exc:
        return "missing", str(exc), repo
    except FileNotFoundError as exc:
        return "missing", str(exc), repo
    if weights.kind == "random":
        why = WEIGHTS_OPTION + "=random" if teacher_options(options).force_random else ALLOW_RANDOM_OPTION
        return "random", f"{repo}: random-init teacher ({why})", repo
    return "cached", f"{repo}: {weights.path}", repo


def configure_torch_threads(options: Mapping[str, Any] | None = None) -> int | None:
    """Set torch's intra-op threads for this labeling process; returns the number set, or None when left alone.

    ``options[THREADS_OPTION]`` wins; else ``options["workers"]`` splits the cores between worker processes; else a
    spawned worker process uses one thread (the runner starts several), and the main process keeps torch's default.
    """
    options = options or {}
    threads = options.get(THREADS_OPTION)
    if threads is None and options.get("workers"):
        threads = max(1, (os.cpu_count() or 1) // int(options["workers"]))
    if threads is None and multiprocessing.parent_process() is not None:
        threads = 1
    if threads is None:
        return None
    threads = max(1, int(threads))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


class FeatureTeacher(BatchLabeler):
    """A labeler that runs a timm ViT teacher over one stored image per sample (see the module docstring).

    The model is built on first use, so declaring a run (provenance, dims) costs nothing.
    """

    version = "1"

    def __init__(self, spec: ModalitySpec, context: LabelContext, config: TeacherConfig) -> None:
        layout = spec.layout(context.preset)
        if layout.grid is None:
            raise ValueError(f"modality {spec.name!r} has no token grid in preset {context.preset!r}")
        self.config = config
        self.grid = layout.grid
        self.input_size = config.image_size or self.grid * config.patch_size
        if self.input_size != self.grid * config.patch_size:
            raise ValueError(
                f"teacher input {self.input_size} px with patch {config.patch_size} does not give a "
                f"{self.grid}x{self.grid} grid"
            )
        self.options = dict(context.options)
        self.weights = resolve_weights(config, self.options)
        self.threads = configure_torch_threads(self.options)
        self._model: torch.nn.Module | None = None
        self._architecture = config.model if self.weights.kind != "random" else (config.fallback_model or config.model)
        self._mean, self._std = self._normalisation()

    # -- model ---------------------------------------------------------------------------------------------------

    def _normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The real teacher's mean / std (from timm's registry, no download) unless the config overrides them."""
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(self.config.model)
        mean = self.config.mean or (tuple(cfg.mean) if cfg is not None else (0.485, 0.456, 0.406))
        std = self.config.std or (tuple(cfg.std) if cfg is not None else (0.229, 0.224, 0.225))
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)

    @property
    def model(self) -> torch.nn.Module:
        """The teacher network (built on first access)."""
        if self._model is None:
            self._model = self._build()
        return self._model

    def _build(self) -> torch.nn.Module:
        import timm

        cfg = self.config
        if self.weights.kind == "random":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                kwargs: dict[str, Any] = {"img_size": self.input_size, "patch_size": cfg.patch_size}
                if cfg.fallback_model or cfg.project:
                    kwargs["num_classes"] = cfg.feature_dim  # a seeded random projection to the stored width
                model = timm.create_model(self._architecture, pretrained=False, **kwargs)
            self._project = bool(cfg.fallback_model or cfg.project)
        else:
            model = timm.create_model(
                cfg.model,
                pretrained=True,
                img_size=self.input_size,
                pretrained_cfg_overlay={"file": self.weights.path},
            )
            self._project = cfg.project
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        width = self._width(model)
        if width != cfg.feature_dim:
            raise ValueError(
                f"teacher {self._architecture} gives {width}-wide features, the modality stores {cfg.feature_dim} "
                f"(check TeacherConfig.project / feature_dim)"
            )
        return model

    def _width(self, model: torch.nn.Module) -> int:
        if self._project:
            head = getattr(model, "head", None)
            out = getattr(head, "out_features", None)
            if out is None:
                raise ValueError(f"teacher {self._architecture} has no linear head to project with")
            return int(out)
        return int(model.embed_dim)

    # -- labeling ------------------------------------------------------------------------------------------------

    def _image(self, sample: SampleView) -> torch.Tensor:
        """One sample's image as a normalised (3, S, S) float tensor; LabelError when it is not uint8 HxWx3."""
        arrays = sample.get(self.config.input_modality)
        if self.config.input_array not in arrays or arrays[self.config.input_array] is None:
            raise LabelError(
                f"sample {sample.index}: {self.config.input_modality!r} has no array {self.config.input_array!r}"
            )
        image = np.asarray(arrays[self.config.input_array])
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
            raise LabelError(
                f"sample {sample.index}: expected a uint8 HxWx3 image, got {image.dtype} {tuple(image.shape)}"
            )
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div_(255.0)
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(
                x, size=(self.input_size, self.input_size), mode="bicubic", align_corners=False, antialias=True
            ).clamp_(0.0, 1.0)
        mean = torch.tensor(self._mean).view(1, 3, 1, 1)
        std = torch.tensor(self._std).view(1, 3, 1, 1)
        return ((x - mean) / std)[0]

    @torch.inference_mode()
    def _forward(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(B, g, g, C) float16 patch features and (B, C) float32 pooled embeddings of a normalised batch."""
        model = self.model
        tokens = model.forward_features(batch)
        fc_norm = getattr(model, "fc_norm", None)
        if getattr(model, "global_pool", None) == "token":
            # CLS pooling: norm and project every token, CLS included, in one matmul whose rows do not depend on
            # the batch size (a (B, C) matmul for the CLS alone takes another code path for small B).
            out = fc_norm(tokens) if fc_norm is not None else tokens
            if self._project:
                out = model.head(out)
            patches, pooled = out[:, model.num_prefix_tokens :], out[:, 0]
        else:
            patches = tokens[:, model.num_prefix_tokens :]
            if fc_norm is not None:
                patches = fc_norm(patches)
            if self._project:
                patches = model.head(patches)
            pooled = model.forward_head(tokens, pre_logits=not self._project)
        b, n, c = patches.shape
        if n != self.grid * self.grid:
            raise RuntimeError(f"teacher gave {n} patch tokens, expected {self.grid}x{self.grid}")
        features = patches.reshape(b, self.grid, self.grid, c).float().numpy().astype(np.float16)
        return features, pooled.float().numpy().astype(np.float32)

    def label_batch(self, samples: Sequence[SampleView]) -> list[dict[str, Any] | LabelError]:
        """Label a block of samples; bad samples come back as LabelError values, the rest in batches."""
        out: list[dict[str, Any] | LabelError | None] = [None] * len(samples)
        ready: list[tuple[int, torch.Tensor]] = []
        for i, sample in enumerate(samples):
            try:
                ready.append((i, self._image(sample)))
            except LabelError as exc:
                out[i] = exc
        for start in range(0, len(ready), self.config.batch_size):
            chunk = ready[start : start + self.config.batch_size]
            features, pooled = self._forward(torch.stack([x for _, x in chunk]))
            for k, (i, _) in enumerate(chunk):
                value: dict[str, Any] = {self.config.patch_array: features[k]}
                if self.config.pooled_array:
                    value[self.config.pooled_array] = pooled[k]
                out[i] = value
        return out  # type: ignore[return-value]

    def dims(self) -> dict[str, int]:
        return {"h": self.grid, "w": self.grid, "C": self.config.feature_dim}

    def provenance(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "teacher": cfg.model,
            "weights": self.weights.describe(),
            "weights_source": self.weights.kind,
            "architecture": self._architecture,
            "patch_size": cfg.patch_size,
            "input_size": self.input_size,
            "grid": self.grid,
            "feature_dim": cfg.feature_dim,
            "projected": bool(cfg.project or (self.weights.kind == "random" and cfg.fallback_model)),
            "mean": list(self._mean),
            "std": list(self._std),
        }
