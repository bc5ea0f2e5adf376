"""The paper's semantic-segmentation teacher: Mask2Former with a Swin-B backbone trained on COCO panoptic.

4M-21 pseudo-labels semseg with "COCO Mask2Former with a SwinB backbone" (appendix, pseudo labeling); the same
checkpoint is maintained in transformers as ``facebook/mask2former-swin-base-coco-panoptic``
(:class:`transformers.Mask2FormerForUniversalSegmentation`). Its 133 classes are the COCO-panoptic classes in
detectron2's contiguous order (80 things, then 53 stuff), which is the order this plugin's class list uses; the labels
are matched by name anyway (:func:`class_lookup`), so a checkpoint with another label order still lands on the right
index, and one with another label space is refused instead of producing wrong classes.

The map is Mask2Former's semantic inference (``semantic_inference`` in the original code, the image processor's
``post_process_semantic_segmentation`` in transformers): per pixel, the argmax over classes of
``sum_q softmax(class_q)[c] * sigmoid(mask_q)``, the "no object" column dropped; every pixel gets a class. The mask
logits are upsampled to the store's image size before the sigmoid, so the map is made at the resolution it is stored
at. Stored values are ``class index + 1`` (0 stays free for "unlabelled"), ml-4m's ``shift_idx_by_one`` form.

torch and transformers are imported here only; the plugin module stays torch-free.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fourm_core import plugin as fp
from fourm_semseg.classes import PANOPTIC_CLASSES

__all__ = ["Mask2FormerTeacher", "build", "class_lookup", "tiny_config"]

#: ImageNet mean / std, what the checkpoint's ``preprocessor_config.json`` gives (used when it is absent)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_SUFFIX = re.compile(r"-(merged|stuff)$")


def _norm(name: str) -> str:
    """A class name in a comparable form: lower case, single spaces, ``_`` as space."""
    return " ".join(str(name).replace("_", " ").lower().split())


def class_lookup(id2label: Mapping[int | str, str], classes: Sequence[str] = PANOPTIC_CLASSES) -> np.ndarray:
    """``lut[model_class_id] = plugin index + 1``, matching the checkpoint's label names to ``classes``.

    Exact names first, then names without detectron2's ``-merged`` / ``-stuff`` suffixes. A label that matches no
    class raises ValueError naming it: a teacher with another label space (ADE20K, Cityscapes) must not be written
    as COCO classes.
    """
    exact = {_norm(c): i for i, c in enumerate(classes)}
    loose = {_SUFFIX.sub("", _norm(c)): i for i, c in enumerate(classes)}
    ids = {int(k): v for k, v in id2label.items()}
    if not ids:
        raise ValueError("the teacher's config has no id2label")
    lut = np.zeros(max(ids) + 1, dtype=np.int16)
    unknown = []
    for k, name in ids.items():
        index = exact.get(_norm(name), loose.get(_SUFFIX.sub("", _norm(name))))
        if index is None:
            unknown.append(name)
        else:
            lut[k] = index + 1
    if unknown:
        raise ValueError(
            f"the teacher's classes are not COCO panoptic: {len(unknown)} labels match none of the "
            f"{len(classes)} classes (first: {unknown[:5]})"
        )
    return lut


def tiny_config(num_labels: int = len(PANOPTIC_CLASSES)) -> Any:
    """A small :class:`~transformers.Mask2FormerConfig` with a Swin backbone and the plugin's class names: the
    random-init teacher (``--allow-random-teachers`` without weights) and the tests' tiny checkpoint. Built from
    config alone, offline."""
    from transformers import Mask2FormerConfig, SwinConfig

    backbone = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    return Mask2FormerConfig(
        backbone_config=backbone,
        feature_size=32,  # the pixel decoder's GroupNorm needs a multiple of 32
        mask_feature_size=32,
        hidden_dim=32,
        encoder_feedforward_dim=32,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        dim_feedforward=32,
        num_queries=16,
        num_labels=num_labels,
        id2label=dict(enumerate(PANOPTIC_CLASSES[:num_labels])),
        label2id={c: i for i, c in enumerate(PANOPTIC_CLASSES[:num_labels])},
    )


def _normalisation(path: Path | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean / std from the checkpoint's ``preprocessor_config.json`` (ImageNet's when it is absent)."""
    config = path / "preprocessor_config.json" if path is not None else None
    if config is None or not config.is_file():
        return IMAGENET_MEAN, IMAGENET_STD
    data = json.loads(config.read_text())
    if not data.get("do_normalize", True):
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return tuple(data.get("image_mean", IMAGENET_MEAN)), tuple(data.get("image_std", IMAGENET_STD))


class Mask2FormerTeacher(fp.HubTeacher):
    """Semantic class maps (``int16``, ``index + 1``) from a Mask2Former COCO-panoptic checkpoint, made at the
    store's image size from a ``resolution``-pixel teacher input."""

    version = "1"

    def __init__(self, spec: fp.ModalitySpec, context: fp.LabelContext, **options: Any) -> None:
        super().__init__(spec, context, **options)
        self.out_size = int(context.image_size)
        self.lut: torch.Tensor | None = None
        self.mean, self.std = _normalisation(self.path)

    def build(self, path: Path | None) -> torch.nn.Module:
        """The checkpoint (safetensors only), or the tiny config's random-init network (the base seeds it)."""
        from transformers import Mask2FormerForUniversalSegmentation

        if path is None:
            model = Mask2FormerForUniversalSegmentation(tiny_config())
        else:
            model = Mask2FormerForUniversalSegmentation.from_pretrained(path, use_safetensors=True)
        self.lut = torch.from_numpy(class_lookup(model.config.id2label).astype(np.int64))
        return model

    def infer(self, batch: torch.Tensor, samples: Sequence[fp.SampleView]) -> list[dict[str, np.ndarray]]:
        """Per sample: class probabilities x mask probabilities summed over queries, argmax, mapped to index + 1."""
        mean = torch.tensor(self.mean, device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
        out = self.network(pixel_values=(batch - mean) / std)
        classes = out.class_queries_logits.float().softmax(-1)[..., :-1]  # (B, Q, C): "no object" dropped
        lut = self.lut.to(classes.device)
        results = []
        for b in range(classes.shape[0]):  # one image at a time bounds the (C, H, W) score volume
            masks = F.interpolate(
                out.masks_queries_logits[b : b + 1].float(),
                size=(self.out_size, self.out_size),
                mode="bilinear",
                align_corners=False,
            )[0].sigmoid()
            scores = torch.einsum("qc,qhw->chw", classes[b], masks)
            results.append({"semseg": lut[scores.argmax(0)].to(torch.int16).cpu().numpy()})
        return results

    def extra_provenance(self) -> dict[str, Any]:
        """How the map is made from the network's outputs, at which size, in which class space."""
        return {
            "inference": "semantic: argmax_c sum_q softmax(class_q)[c] * sigmoid(mask_q), no-object dropped",
            "output_size": self.out_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "classes": f"COCO panoptic ({len(PANOPTIC_CLASSES)}), stored as index + 1, matched by name",
        }


def build(spec: fp.ModalitySpec, context: fp.LabelContext, **options: Any) -> Mask2FormerTeacher:
    """The labeler factory ``fp.teacher_labeler`` names: options are the HubModel, resolution and batch size."""
    return Mask2FormerTeacher(spec, context, **options)
