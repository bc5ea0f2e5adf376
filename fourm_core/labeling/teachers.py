"""The core's timm feature teacher (:class:`TimmFeatureTeacher`) and the torch thread setting of labeling processes.

A feature-map modality (CLIP, DINOv2, ImageBind in 4M-21) declares its teacher as a
:class:`~fourm_core.labeling.features.FeatureTeacherSpec`; this module runs it. The weights are the hub snapshot
:class:`~fourm_core.labeling.hub_teacher.HubTeacher` resolves (cache, else a download when allowed; random-init only
with ``allow_random_teachers``), loaded by timm from the snapshot's ``config.json`` and ``model.safetensors`` (never a
pickle), with the position embedding resampled by timm to the run's grid. What is stored is what ml-4m's feature
tokenizers were trained on: the tokens after the model's final norm, the patch tokens as a ``(grid, grid, C)``
float16 map and, when asked, the CLS token as a ``(C,)`` float32 vector, optionally through the model's head
(CLIP's projection). torch and timm are imported here; plugins and the planner never import this module.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fourm_core.labeling.api import LabelContext, SampleView
from fourm_core.labeling.features import FeatureTeacherSpec
from fourm_core.labeling.hub import TeacherUnavailable, hf_download_hint
from fourm_core.labeling.hub_teacher import HubTeacher
from fourm_core.spec import ModalitySpec

__all__ = ["THREADS_OPTION", "WEIGHTS_FILE", "TimmFeatureTeacher", "configure_torch_threads"]

#: Run option: torch threads per labeling process. Without it, ``workers`` (when given) splits the cores, and a
#: labeling worker process uses one thread.
THREADS_OPTION = "torch_threads"
#: The weight file read from a timm snapshot: safetensors only (timm's local-dir loader would fall back to a pickle).
WEIGHTS_FILE = "model.safetensors"


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


class TimmFeatureTeacher(HubTeacher):
    """A timm ViT hub teacher storing its final-norm patch tokens (and CLS), as its spec says (module docstring)."""

    #: "2": hub weights through ``HubTeacher`` (the version 1 teacher read weight files named by variables).
    version = "2"

    def __init__(self, spec: ModalitySpec, context: LabelContext, teacher: FeatureTeacherSpec) -> None:
        grid = spec.layout(context.preset).grid
        if grid is None:
            raise ValueError(f"modality {spec.name!r} has no token grid in preset {context.preset!r}")
        self.teacher = teacher
        self.grid = int(grid)
        self.seed = teacher.seed
        self.kwargs: dict[str, Any] = {"act_layer": teacher.act_layer} if teacher.act_layer else {}
        super().__init__(
            spec,
            context,
            teacher.model,
            resolution=self.grid * teacher.patch_size,
            batch_size=teacher.batch_size,
            image_modality=teacher.input_modality,
            image_array=teacher.input_array,
        )

    @property
    def architecture(self) -> str:
        """The timm architecture (the spec fills it from the repo name when the plugin leaves it out)."""
        return str(self.teacher.architecture)

    def build(self, path: Path | None) -> torch.nn.Module:
        """The timm model from the snapshot, or the random-init stand-in (the same class, the spec's small config);
        either way checked against the patch size and width the modality stores."""
        import timm

        if path is None:
            net = timm.create_model(
                self.architecture,
                pretrained=False,
                img_size=self.resolution,
                **{**self.kwargs, **self.teacher.random_config},
            )
        else:
            if not (path / WEIGHTS_FILE).is_file():
                raise TeacherUnavailable(
                    f"teacher {self.model_id}: {path} has no {WEIGHTS_FILE} (safetensors only); "
                    f"fetch it with `{hf_download_hint(self.hub)}`"
                )
            net = timm.create_model(f"local-dir:{path}", pretrained=True, img_size=self.resolution, **self.kwargs)
        patch = tuple(net.patch_embed.patch_size)
        width = getattr(net.head, "out_features", None) if self.teacher.project else net.embed_dim
        if patch != (self.teacher.patch_size,) * 2 or width != self.teacher.feature_dim:
            what = "projection width" if self.teacher.project else "width"
            raise ValueError(
                f"teacher {self.model_id}: patch {patch} and {what} {width}, the modality needs patch "
                f"{self.teacher.patch_size} and {self.teacher.feature_dim}-wide features"
            )
        return net

    def infer(self, batch: torch.Tensor, samples: Sequence[SampleView]) -> list[dict[str, np.ndarray]]:
        """Normalise, run the model to its final norm, keep the patch grid (and CLS), project when asked."""
        net, teacher = self.network, self.teacher
        tokens = net.forward_features(self.normalise(batch, teacher.mean, teacher.std))  # (B, prefix + g*g, D)
        patches = tokens[:, net.num_prefix_tokens :]
        pooled = tokens[:, :1]
        if teacher.project:
            patches = net.head(patches)
            pooled = net.head(pooled) if teacher.pooled_array else pooled
        b, n, c = patches.shape
        if n != self.grid * self.grid:
            raise RuntimeError(f"teacher {self.model_id} gave {n} patch tokens, expected {self.grid}x{self.grid}")
        features = self.to_numpy(patches.reshape(b, self.grid, self.grid, c)).astype(np.float16)
        if not teacher.pooled_array:
            return [{teacher.patch_array: f} for f in features]
        cls = self.to_numpy(pooled[:, 0], np.float32)
        return [{teacher.patch_array: f, teacher.pooled_array: p} for f, p in zip(features, cls)]

    def dims(self) -> dict[str, int]:
        return {"h": self.grid, "w": self.grid, "C": self.teacher.feature_dim}

    def extra_provenance(self) -> dict[str, Any]:
        teacher = self.teacher
        return {
            "architecture": self.architecture,
            **({"act_layer": teacher.act_layer} if teacher.act_layer else {}),
            "layer": teacher.layer or "tokens after the final norm" + (", through the head" if teacher.project else ""),
            "projected": teacher.project,
            "patch_size": teacher.patch_size,
            "grid": self.grid,
            "feature_dim": teacher.feature_dim,
            "normalisation": teacher.normalisation,
            "mean": list(teacher.mean or ()),
            "std": list(teacher.std or ()),
            **({"random_config": dict(teacher.random_config)} if self.random_init else {}),
        }
