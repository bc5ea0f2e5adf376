"""What the generic mask tokenizer needs from this plugin: one square mask per instance, cut to its box (as ml-4m's
SAM instance tokenizer sees masks), and the way back from a square mask to the instance in the image."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def mask_items(sample: dict[str, Any], size: int) -> np.ndarray:
    """(N, size, size) uint8 masks: instance ``i + 1`` of the instance map inside box ``i``, resized."""
    instances = np.asarray(sample["instances"])
    boxes = np.asarray(sample["boxes"]).reshape(-1, 4)
    masks = np.zeros((len(boxes), size, size), np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        crop = instances[y0 : y1 + 1, x0 : x1 + 1] == i + 1
        if not crop.any():
            raise ValueError(f"sam_instance: instance {i + 1} has no pixels inside its box {(x0, y0, x1, y1)}")
        t = torch.from_numpy(crop.astype(np.float32))[None, None]
        masks[i] = (F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0] >= 0.5).numpy()
    return masks


def paste_mask(mask: np.ndarray, box: tuple[int, int, int, int], image_size: int) -> np.ndarray:
    """A decoded square mask put back into its box of an ``image_size`` image (bool)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    h, w = max(y1 - y0 + 1, 1), max(x1 - x0 + 1, 1)
    t = torch.from_numpy(np.asarray(mask, np.float32))[None, None]
    inside = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy() >= 0.5
    out = np.zeros((image_size, image_size), bool)
    out[y0 : y0 + h, x0 : x0 + w] = inside[: image_size - y0, : image_size - x0]
    return out
