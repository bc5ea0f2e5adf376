"""Pictures of sam_instance values: every instance's mask in its own colour over the input picture.

A mask is only in the string as 16 codebook tokens of a square mask cut to the instance's box, so it needs the
mask tokenizer to come back; :func:`fourm_sam_instance.tokenizing.paste_mask` then puts it into its box, the way
the tokenizer's items were cut. Boxes are pixels of the model's image (the input picture's side, else the preset's
image size). Without a tokenizer (or when decoding fails) the boxes are drawn alone, with a note saying why. Query
points are small white dots.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fourm_core.plugin import RenderContext, base_picture, distinct_colour
from fourm_sam_instance.serializer import Instance, QueryPoint

MODALITY = "sam_instance"
#: Side of the model's image per preset, for values drawn without an input picture.
IMAGE_SIZE = {"paper": 224, "tiny": 64}
#: Opacity of a mask's colour over the picture.
ALPHA = 0.55


def unique_instances(points: Sequence[QueryPoint]) -> list[Instance]:
    """Instances in order of first appearance; one instance found by several points is drawn once."""
    seen: dict[tuple[Any, ...], Instance] = {}
    for point in points:
        for inst in point.instances:
            seen.setdefault((inst.bbox, inst.tokens), inst)
    return list(seen.values())


def instance_masks(instances: Sequence[Instance], tokenizer: Any, image_size: int) -> list[np.ndarray]:
    """(image_size, image_size) bool masks: each instance's tokens decoded and pasted into its box."""
    import torch

    from fourm_sam_instance.tokenizing import paste_mask

    if not instances:
        return []
    ids = torch.tensor([list(inst.tokens) for inst in instances], dtype=torch.long)
    squares = tokenizer.decode_raw(ids)
    return [
        paste_mask(np.squeeze(np.asarray(square)), inst.bbox, image_size)
        for square, inst in zip(squares, instances, strict=True)
    ]


class SamInstanceDecoder:
    """Coloured masks (boxes alone without a mask tokenizer), a distinct colour per instance."""

    def render(self, value: Sequence[QueryPoint | dict[str, Any]], context: RenderContext) -> np.ndarray:
        from PIL import Image, ImageDraw

        points = [p if isinstance(p, QueryPoint) else QueryPoint.model_validate(p) for p in value]
        instances = unique_instances(points)
        image_size = context.image.shape[0] if context.image is not None else IMAGE_SIZE.get(context.preset, 64)
        size, scale = context.size, context.size / image_size
        masks, note = self._masks(instances, context, image_size)
        picture = np.asarray(base_picture(context), dtype=np.float32)
        for i, mask in enumerate(masks or []):
            big = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.NEAREST)) > 0
            picture[big] = (1 - ALPHA) * picture[big] + ALPHA * np.asarray(distinct_colour(i), np.float32)
        out = Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(out)
        for i, inst in enumerate(instances):
            x0, y0, x1, y1 = inst.bbox
            rect = (x0 * scale, y0 * scale, (x1 + 1) * scale - 1, (y1 + 1) * scale - 1)
            draw.rectangle(rect, outline=distinct_colour(i), width=1)
        r = max(1, size // 96)
        for p in points:
            x, y = (p.x + 0.5) * scale, (p.y + 0.5) * scale
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 255, 255), outline=(0, 0, 0))
        if note and instances:
            draw.rectangle((0, 0, int(draw.textlength(note)) + 4, 12), fill=(0, 0, 0))
            draw.text((2, 0), note, fill=(255, 255, 255))
        return np.asarray(out, dtype=np.uint8)

    @staticmethod
    def _masks(
        instances: list[Instance], context: RenderContext, image_size: int
    ) -> tuple[list[np.ndarray] | None, str]:
        """The pasted masks, or None and the note to show instead."""
        if not instances:
            return [], ""
        tokenizer = context.tokenizer(MODALITY)
        if tokenizer is None:
            return None, "no mask tokenizer"
        try:
            masks = instance_masks(instances, tokenizer, image_size)
        except Exception:  # an untrained or mismatched tokenizer: show the boxes, say why
            return None, "mask decoding failed"
        return masks, "" if getattr(tokenizer, "trained", True) else "untrained mask tokenizer"
