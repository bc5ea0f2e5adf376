"""COCO box AP and mask AP of generated items, computed by pycocotools' own ``COCOeval`` so the numbers are the ones
papers report (AP@[.5:.95], AP50, AP75 over 101 recall points, up to 100 detections per image, all areas).

Items without labels are of one category, so their AP is class-agnostic (for a one-class target such as people it
is the usual AP of that class); labelled boxes (detections) are scored per class and averaged as COCO does.

**Scores.** COCO ranks predictions by a confidence. Generated items get theirs from the sampler: the geometric-mean
probability of the item's sampled ids (:mod:`fourm_core.inference.confidence`), passed as ``predicted_scores``.
Without scores every prediction scores 1; ``COCOeval`` then keeps the generation order (a stable sort), and with
final recall ``R`` and precision ``P`` at an IoU threshold ``P * R101 <= AP <= R101`` (``R101``: the share of the
101 recall points at or below ``R``), a number comparable only with other constant-score runs.

Masks: each item's mask is its box-cropped square mask (the item tokenizer's form), pasted into its box of the
``image_size`` image and run-length encoded by ``pycocotools.mask``. The true masks are the stored items in the same
form, pasted the same way, so mask AP measures what the tokens and boxes can express, not the resampling of a crop.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

__all__ = ["coco_ap", "paste_mask"]

Box = tuple[float, float, float, float]


def paste_mask(mask: np.ndarray, box: Box, image_size: int) -> np.ndarray:
    """A square box-cropped mask (any side) put back into ``box`` (image fractions) of an ``image_size`` image:
    bilinear resize to the box's pixel extent, threshold 0.5 (as the crop was made). Hand-written because no
    maintained library pastes a crop into a box; it is one resize and one slice."""
    import torch
    import torch.nn.functional as F

    x0, y0 = (min(max(int(round(v * image_size)), 0), image_size - 1) for v in box[:2])
    x1, y1 = (min(max(int(round(v * image_size)), 1), image_size) for v in box[2:])
    w, h = max(x1 - x0, 1), max(y1 - y0, 1)
    square = np.asarray(mask, np.float32)
    if square.ndim == 3:  # (S, S, 1): a one-channel transform's raw form
        square = square[..., 0]
    t = torch.from_numpy(square)[None, None]
    inside = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy() >= 0.5
    out = np.zeros((image_size, image_size), np.uint8)
    out[y0 : y0 + h, x0 : x0 + w] = inside[: image_size - y0, : image_size - x0]
    return out


def coco_ap(
    truth: Sequence[Sequence[Box]],
    predicted: Sequence[Sequence[Box]],
    image_size: int,
    truth_masks: Sequence[Sequence[np.ndarray]] | None = None,
    predicted_masks: Sequence[Sequence[np.ndarray]] | None = None,
    prefix: str = "box",
    truth_labels: Sequence[Sequence[str]] | None = None,
    predicted_labels: Sequence[Sequence[str]] | None = None,
    predicted_scores: Sequence[Sequence[float]] | None = None,
) -> dict[str, float]:
    """``{prefix}_ap``, ``{prefix}_ap50``, ``{prefix}_ap75`` of the predicted items against the true ones, one list
    per image, boxes ``(xmin, ymin, xmax, ymax)`` as image fractions. With masks (per image, aligned with the boxes,
    already in the ``image_size`` frame: :func:`paste_mask`) the IoU is of masks (``segm``), else of boxes.
    Empty when no image has a true item (COCO then has nothing to average); 0 when there are truths but no
    predictions. ``predicted_scores`` (per image, aligned with the boxes) rank the predictions; without them every
    prediction scores 1 (see the module docstring for what AP then means).

    With labels (per image, aligned with the boxes), each label is a COCO category: AP is averaged over the
    categories that have a true item (COCO's rule), and a prediction matches only truths of its label; a predicted
    label no truth has adds false positives to no category's average, as in COCO."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(truth) != len(predicted):
        raise ValueError(f"{len(predicted)} predicted images for {len(truth)} true ones")
    if predicted_scores is not None and [len(s) for s in predicted_scores] != [len(p) for p in predicted]:
        raise ValueError("predicted_scores must give one score per predicted item of every image")
    segm = truth_masks is not None and predicted_masks is not None
    labelled = truth_labels is not None and predicted_labels is not None
    names = sorted({str(x) for ls in [*(truth_labels or ()), *(predicted_labels or ())] for x in ls}) or ["item"]
    category = {name: i + 1 for i, name in enumerate(names)}
    if not any(len(t) for t in truth):
        return {}
    if not any(len(p) for p in predicted):
        return {f"{prefix}_ap": 0.0, f"{prefix}_ap50": 0.0, f"{prefix}_ap75": 0.0}

    def shape(box: Box, mask: np.ndarray | None) -> dict:
        x0, y0, x1, y1 = (float(v) * image_size for v in box)
        out: dict = {"bbox": [x0, y0, max(x1 - x0, 0.0), max(y1 - y0, 0.0)]}
        if mask is None:
            out["area"] = out["bbox"][2] * out["bbox"][3]
        else:
            rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            out["segmentation"], out["area"] = rle, float(mask_utils.area(rle))
        return out

    annotations: list[dict] = []
    results: list[dict] = []
    for image, (boxes, guesses) in enumerate(zip(truth, predicted, strict=True)):
        for k, box in enumerate(boxes):
            m = truth_masks[image][k] if segm else None  # type: ignore[index]
            cat = category[str(truth_labels[image][k])] if labelled else 1  # type: ignore[index]
            annotations.append(
                {**shape(box, m), "category_id": cat, "id": len(annotations) + 1, "image_id": image, "iscrowd": 0}
            )
        for k, box in enumerate(guesses):
            m = predicted_masks[image][k] if segm else None  # type: ignore[index]
            found = shape(box, m)
            # loadRes reads a result as a box when it has "bbox", so a mask result carries only its segmentation
            kept = {"segmentation": found["segmentation"]} if segm else {"bbox": found["bbox"]}
            cat = category[str(predicted_labels[image][k])] if labelled else 1  # type: ignore[index]
            confidence = float(predicted_scores[image][k]) if predicted_scores is not None else 1.0
            results.append({**kept, "category_id": cat, "image_id": image, "score": confidence})
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = {
            "images": [{"id": i, "width": image_size, "height": image_size} for i in range(len(truth))],
            "annotations": annotations,
            "categories": [{"id": i, "name": name} for name, i in category.items()],
        }
        gt.createIndex()
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, "segm" if segm else "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ap, ap50, ap75 = (max(float(v), 0.0) for v in evaluator.stats[:3])
    return {f"{prefix}_ap": ap, f"{prefix}_ap50": ap50, f"{prefix}_ap75": ap75}
