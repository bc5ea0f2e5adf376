"""Feature teachers declared, not coded: a timm ViT on the hub whose patch tokens (and CLS) a modality stores, and the
copy of that CLS vector a global-embedding modality tokenizes.

A plugin states its teacher as a :class:`FeatureTeacherSpec` (which hub weights, which timm architecture, which
layer: final-norm tokens, with or without the model's head projection; the input normalisation; the random-init
stand-in's small config) and hands it to ``fp.feature_map_modality``; the labeler is the core's
:class:`~fourm_core.labeling.teachers.TimmFeatureTeacher`, built by :func:`feature_teacher` when labeling runs. The
global modality copies the stored CLS with :func:`copy_embedding`, which names the teacher in its provenance, and
requires the same ``hub:`` weights, so a run without them skips both modalities with the same ``hf download`` line.

This module is torch-free (plugins declare teachers at import time; the runner resolves these factories when it
plans a run): torch and timm are imported by :mod:`fourm_core.labeling.teachers`, only when a teacher runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fourm_core.labeling.api import LabelContext
from fourm_core.labeling.common import CopyArray
from fourm_core.labeling.hub import HubModel
from fourm_core.spec import ModalitySpec

__all__ = [
    "NORMALISATIONS",
    "FeatureTeacherSpec",
    "TeacherEmbedding",
    "copy_embedding",
    "feature_teacher",
]

#: Named input normalisations (mean, std): ImageNet's (what ml-4m's feature tokenizers saw for every teacher) and
#: OpenAI CLIP's own.
NORMALISATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "openai_clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}


class FeatureTeacherSpec(BaseModel):
    """A timm ViT teacher of a feature-map modality: what runs, on what, and which of its outputs is stored.

    The stored map is the patch tokens after the model's final norm (``forward_features``), CLS and other prefix
    tokens dropped, optionally passed through the model's ``head`` (``project``: CLIP's projection); ``pooled_array``
    also stores the CLS token (projected too when ``project``). The input is the image resized to ``grid *
    patch_size`` pixels (the grid is the modality's preset grid) and normalised with ``mean`` / ``std``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: HubModel = Field(..., description="the teacher's weights on the hub (a timm model repo)")
    architecture: str | None = Field(
        None,
        description="timm architecture of the weights and of the random-init stand-in; default the repo name "
        "without its pretrained tag (timm/vit_base_patch14_dinov2.lvd142m -> vit_base_patch14_dinov2)",
    )
    patch_size: int = Field(..., gt=0, description="the teacher's patch size in pixels")
    feature_dim: int = Field(..., gt=0, description="C of the stored features (the head's width when project)")
    project: bool = Field(False, description="pass the final-norm tokens through the model's head (a projection)")
    act_layer: str | None = Field(None, description="timm activation override (OpenAI CLIP needs quick_gelu)")
    input_modality: str = Field(..., description="modality whose stored array holds the uint8 HxWx3 image")
    input_array: str = Field(..., description="array of that modality holding the image")
    patch_array: str = Field("features", description="output array for the (grid, grid, C) patch features")
    pooled_array: str | None = Field(None, description="output array for the (C,) CLS embedding, if stored")
    normalisation: str = Field("imagenet", description="name of the input normalisation, recorded in provenance")
    mean: tuple[float, float, float] | None = Field(None, description="input mean; default the named normalisation's")
    std: tuple[float, float, float] | None = Field(None, description="input std; default the named normalisation's")
    layer: str = Field("", description="which layer is stored, in words, for provenance (ml-4m's name for it)")
    random_config: dict[str, Any] = Field(
        default_factory=dict,
        description="timm kwargs of the small random-init stand-in (embed_dim, number of blocks, ...)",
    )
    seed: int = Field(0, description="seed of the random-init stand-in")
    batch_size: int = Field(16, gt=0, description="images per forward pass")

    @model_validator(mode="before")
    @classmethod
    def _fill(cls, data: Any) -> Any:
        """Fill the architecture from the repo name and mean / std from the named normalisation, so the declaration
        (and the labeler options it becomes) says exactly what runs."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        if not data.get("architecture"):
            model = data.get("model")
            model_id = model.model_id if isinstance(model, HubModel) else dict(model or {}).get("model_id", "")
            data["architecture"] = str(model_id).rsplit("/", 1)[-1].split(".", 1)[0] or None
        name = data.get("normalisation", "imagenet")
        if data.get("mean") is None or data.get("std") is None:
            if name not in NORMALISATIONS:
                raise ValueError(f"normalisation {name!r} is not one of {sorted(NORMALISATIONS)}: give mean and std")
            mean, std = NORMALISATIONS[name]
            data["mean"] = mean if data.get("mean") is None else data["mean"]
            data["std"] = std if data.get("std") is None else data["std"]
        return data

    @model_validator(mode="after")
    def _check(self) -> FeatureTeacherSpec:
        if not self.architecture:
            raise ValueError(f"teacher {self.model.model_id}: give the timm architecture")
        if self.model.library != "timm":
            raise ValueError(f"teacher {self.model.model_id}: a feature teacher is a timm model ({self.model.library})")
        known = NORMALISATIONS.get(self.normalisation)
        if known is not None and (self.mean, self.std) != known:
            raise ValueError(f"mean / std differ from {self.normalisation!r}'s: name the normalisation otherwise")
        if self.pooled_array is not None and self.pooled_array == self.patch_array:
            raise ValueError(f"patch_array and pooled_array are both {self.patch_array!r}")
        return self

    def labeler_options(self) -> dict[str, Any]:
        """The labeler options this teacher becomes (``fp.teacher_labeler`` adds ``model`` itself)."""
        return self.model_dump(mode="json", exclude={"model"})


def feature_teacher(spec: ModalitySpec, context: LabelContext, model: Mapping[str, Any], **options: Any) -> Any:
    """The labeler factory ``fp.feature_map_modality`` names: a
    :class:`~fourm_core.labeling.teachers.TimmFeatureTeacher` (torch and timm are imported here, when labeling runs)."""
    from fourm_core.labeling.teachers import TimmFeatureTeacher

    return TimmFeatureTeacher(spec, context, FeatureTeacherSpec.model_validate({**options, "model": model}))


class TeacherEmbedding(CopyArray):
    """A copy of the CLS vector a teacher stored, naming the teacher: whether that run had real or random-init
    weights is in the copied modality's provenance, where the vector was computed."""

    def __init__(self, modality: str, array: str, target: str, width: int, model_id: str) -> None:
        super().__init__(modality, array, target, width)
        self.model_id = model_id

    def provenance(self) -> dict[str, Any]:
        return {
            **super().provenance(),
            "teacher": self.model_id,
            "weights": f"as in {self.modality}/raw (this part copies its {self.array!r} array)",
        }


def copy_embedding(
    spec: ModalitySpec, context: LabelContext, model: Mapping[str, Any], modality: str, array: str, target: str
) -> TeacherEmbedding:
    """The labeler factory ``fp.global_embedding_modality`` names: a copy of ``modality.array`` into ``target``, as
    wide as the spec's tokenizer input (``tokenizer.input_channels``)."""
    width = spec.tokenizer.input_channels if spec.tokenizer and spec.tokenizer.input_channels else None
    if width is None:
        raise ValueError(f"modality {spec.name!r}: the tokenizer config must give input_channels (the vector width)")
    return TeacherEmbedding(modality, array, target, int(width), HubModel.model_validate(dict(model)).model_id)
