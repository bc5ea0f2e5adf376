"""SAM ViT-H queried with a 32 x 32 point grid (4M-21's SAM instances), through transformers' ``SamModel``.

This is SAM's automatic mask generator as transformers' mask-generation pipeline runs it, reusing the pieces the
pipeline uses (``SamImageProcessor.generate_crop_boxes`` for the point grid, ``filter_masks`` for the predicted-IoU
and stability filters, ``post_process_for_mask_generation`` for the box non-maximum suppression of duplicates), with
changes that make it a batch labeler whose cost is the network, not the post-processing:

* several images share one forward pass: their embeddings are computed together, and each grid chunk of points is
  decoded for all of them at once (the pipeline does one image at a time);
* the predicted-IoU filter runs first, on the decoder's scores, before any mask is resized: only the masks that pass
  it are interpolated (the pipeline resizes all 3 masks of every point, 3072 per image, and filters afterwards). The
  filter needs only the scores, so this changes nothing but the cost;
* masks are resized once, from the decoder's low-resolution logits straight to the size the labels are stored at (the
  store's image size, e.g. 64 or 224 px), and the stability score, the binarised masks and the boxes for the
  non-maximum suppression are computed at that size. This is where we depart from the pipeline, which resizes the
  logits to the padded 1024 x 1024 frame and then to the ORIGINAL image's size, and computes stability and boxes
  there. The masks end at the store's size anyway (the instance map is stored there), so resizing to a larger frame
  only to shrink again costs 20 to 250 times the pixels (1024 px against 224 or 64) for nothing; what it changes is
  that the stability score (a ratio of pixel counts of the logits thresholded at -1 and +1) and the boxes are
  measured on the store's pixel grid: coarser at 64 px, so a mask whose band between those two contours is thinner
  than a stored pixel can count as more stable, and boxes (thus NMS overlaps) are rounded to stored pixels, as the
  stored boxes are anyway. Our images are square (the teacher sees the stored image resized to the model's side),
  so there is no padding to cut away.

The store keeps one instance id per pixel, not SAM's overlapping masks: masks are painted largest first, so a part
found inside a whole (a face on a person) stays its own instance on top of it, and ids are then relabelled
1..n with their pixel boxes (:func:`fourm_sam_instance.labelers.instances_and_boxes`). A mask left with fewer than
``min_pixels`` visible pixels is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from fourm_core import plugin as fp
from fourm_core.plugin import LabelContext, LabelError, ModalitySpec, SampleView
from fourm_sam_instance.labelers import instances_and_boxes

#: resized mask logits per filtering pass (4 MB of float32): small enough to stay in cache between the resize and the
#: stability thresholds, large enough that the per-call overhead does not count
PIXELS_PER_PASS = 1 << 20


class MaskGeneratorSettings(BaseModel):
    """SAM's automatic-mask-generator settings (defaults: the SAM paper's, as in transformers' pipeline)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    points_per_side: int = Field(32, ge=1, le=128, description="query grid side (4M-21: 32 x 32 points)")
    points_per_batch: int = Field(256, ge=1, description="grid points decoded per forward pass, for all images")
    pred_iou_thresh: float = Field(0.88, ge=0.0, le=1.0, description="keep masks whose predicted IoU is above")
    stability_score_thresh: float = Field(0.95, ge=0.0, le=1.0, description="keep masks more stable than this")
    stability_score_offset: float = Field(1.0, ge=0.0, description="logit shift of the stability score")
    box_nms_thresh: float = Field(0.7, gt=0.0, le=1.0, description="box IoU above which a duplicate is dropped")
    min_pixels: int = Field(1, ge=1, description="visible pixels an instance needs after painting to be kept")


def tiny_sam_config(image_size: int = 1024) -> Any:
    """A small ``SamConfig`` with SAM's layout (ViT image encoder, prompt encoder, two-way mask decoder): the
    random-init stand-in's architecture, and what the tests save as a fake hub snapshot."""
    from transformers import SamConfig

    patch = max(image_size // 16, 1)
    return SamConfig(
        vision_config=dict(
            image_size=image_size,
            patch_size=patch,
            hidden_size=32,
            output_channels=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            window_size=4,
            global_attn_indexes=[1],
            num_pos_feats=16,
            mlp_dim=64,
        ),
        prompt_encoder_config=dict(image_size=image_size, patch_size=patch, hidden_size=32, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
    )


def paint_instances(masks: Sequence[np.ndarray], shape: tuple[int, int], min_pixels: int = 1) -> dict[str, np.ndarray]:
    """One instance id per pixel from overlapping boolean masks: largest painted first, so smaller masks (parts,
    objects on a surface) stay visible on top; ids relabelled 1..n in painting order, 0 = no mask. A mask with fewer
    than ``min_pixels`` pixels left visible is dropped and the rest painted again, so what it hid shows through."""
    order = sorted(range(len(masks)), key=lambda i: -int(np.count_nonzero(masks[i])))
    canvas = _paint(masks, order, shape)
    if min_pixels > 1 and order:
        visible = np.bincount(canvas.ravel(), minlength=len(order) + 1)
        order = [i for rank, i in enumerate(order, start=1) if visible[rank] >= min_pixels]
        canvas = _paint(masks, order, shape)
    return instances_and_boxes(canvas)


def _paint(masks: Sequence[np.ndarray], order: Sequence[int], shape: tuple[int, int]) -> np.ndarray:
    canvas = np.zeros(shape, np.int32)
    for rank, i in enumerate(order, start=1):
        canvas[np.asarray(masks[i], bool)] = rank
    return canvas


class SamGridInstances(fp.HubTeacher):
    """SAM queried on a point grid, its masks filtered and de-duplicated as SAM's automatic mask generator does, then
    flattened into the store's instance map (see the module docstring)."""

    version = "1"

    def __init__(
        self,
        spec: ModalitySpec,
        context: LabelContext,
        model: Any,
        resolution: int = 1024,
        batch_size: int = 4,
        **settings: Any,
    ) -> None:
        self.settings = MaskGeneratorSettings(**settings)
        super().__init__(spec, context, model, resolution, batch_size)
        self.processor: Any = None
        self._grid: torch.Tensor | None = None

    def build(self, path: Path | None) -> Any:
        """``SamModel`` and its image processor from the snapshot (safetensors only); the small config otherwise."""
        from transformers import SamImageProcessor, SamModel

        if path is None:
            self.processor = SamImageProcessor()
            net = SamModel(tiny_sam_config(self.resolution))
        else:
            self.processor = SamImageProcessor.from_pretrained(path)
            net = SamModel.from_pretrained(path, use_safetensors=True)
        side = net.config.vision_config.image_size
        if side != self.resolution:
            raise ValueError(f"{self.model_id}: the model takes {side} px images, the labeler asks {self.resolution}")
        return net

    def grid(self) -> torch.Tensor:
        """(P, 2) query points (x, y) in the model's input frame, from the image processor (as the pipeline)."""
        if self._grid is None:
            side = self.resolution
            _, points, _, _ = self.processor.generate_crop_boxes(
                torch.zeros(3, side, side), side, crop_n_layers=0, points_per_crop=self.settings.points_per_side
            )
            self._grid = points[0, :, 0, :].float()
        return self._grid

    def infer(self, batch: torch.Tensor, samples: Sequence[SampleView]) -> list[dict[str, np.ndarray] | LabelError]:
        """Instances of each image: embeddings once, every grid chunk decoded for the whole batch."""
        net = self.network
        mean = torch.tensor(self.processor.image_mean, device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.processor.image_std, device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
        embeddings = net.get_image_embeddings((batch - mean) / std)
        shapes = [tuple(self.image_of(s).shape[:2]) for s in samples]
        found: list[list[tuple[Any, torch.Tensor, torch.Tensor]]] = [[] for _ in samples]
        grid = self.grid().to(batch.device)
        for start in range(0, len(grid), self.settings.points_per_batch):
            points = grid[start : start + self.settings.points_per_batch]
            n = len(points)
            out = net(
                image_embeddings=embeddings,
                input_points=points[None, :, None, :].expand(len(samples), n, 1, 2),
                input_labels=torch.ones(len(samples), n, 1, dtype=torch.long, device=batch.device),
                multimask_output=True,
            )
            for i, (h, w) in enumerate(shapes):
                found[i].append(self._filter(out.pred_masks[i], out.iou_scores[i], h, w))
        return [self._instances(chunks, shape) for chunks, shape in zip(found, shapes, strict=True)]

    def _filter(self, logits: torch.Tensor, scores: torch.Tensor, h: int, w: int) -> tuple[Any, Any, Any]:
        """One image's chunk (``logits`` (points, 3, h', w') at the decoder's resolution, ``scores`` (points, 3)):
        the predicted-IoU filter on the scores first, then only the masks that pass it resized to the stored size
        for the processor's stability filter, binarisation and boxes (run-length masks, scores, boxes).

        The survivors are resized and filtered a few at a time (:data:`PIXELS_PER_PASS`): every step is per mask, so
        the result is the same as in one pass, but each slice of resized logits is still in cache when the two
        stability thresholds read it (about 3 times faster than resizing all, then thresholding all)."""
        s = self.settings
        logits, scores = logits.flatten(0, 1), scores.flatten(0, 1).float()
        if s.pred_iou_thresh > 0.0:
            keep = scores > s.pred_iou_thresh
            logits, scores = logits[keep], scores[keep]
        rles: list[Any] = []
        kept, boxes = [torch.zeros(0)], [torch.zeros(0, 4, dtype=torch.long)]
        step = max(1, PIXELS_PER_PASS // (h * w))
        for start in range(0, len(scores), step):
            part = logits[start : start + step, None].float()
            part = F.interpolate(part, size=(h, w), mode="bilinear", align_corners=False)
            rle, score, box = self.processor.filter_masks(
                part.transpose(0, 1),  # (1, masks, h, w): the processor flattens the first two axes
                scores[None, start : start + step],
                (h, w),
                torch.tensor([0, 0, w, h]),  # the whole image is the one crop (as the pipeline without crop layers)
                0.0,  # predicted IoU: filtered above, before resizing
                s.stability_score_thresh,
                0.0,
                s.stability_score_offset,
            )
            rles.extend(rle)
            kept.append(score.float().cpu())
            boxes.append(box.long().cpu())
        return rles, torch.cat(kept), torch.cat(boxes)

    def _instances(self, chunks: list[tuple[Any, torch.Tensor, torch.Tensor]], shape: tuple[int, int]) -> dict:
        """Non-maximum suppression over all of an image's kept masks, then the painted instance map."""
        rles = [r for chunk in chunks for r in chunk[0]]
        if not rles:
            return paint_instances([], shape)
        scores = torch.cat([c[1] for c in chunks])
        boxes = torch.cat([c[2] for c in chunks])
        masks, _, _, _ = self.processor.post_process_for_mask_generation(
            rles, scores, boxes, self.settings.box_nms_thresh
        )
        return paint_instances([m.numpy() for m in masks], shape, self.settings.min_pixels)

    def extra_provenance(self) -> dict[str, Any]:
        return {
            "method": "SAM automatic masks on a point grid (transformers SamModel), painted largest first",
            **self.settings.model_dump(),
        }


def build(spec: ModalitySpec, context: LabelContext, **options: Any) -> SamGridInstances:
    """The SAM teacher labeler (``options``: ``model`` from the plugin, resolution, batch_size and the
    :class:`MaskGeneratorSettings`)."""
    return SamGridInstances(spec, context, **options)
