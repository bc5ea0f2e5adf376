"""Pictures of human_poses values: each person's skeleton over the input picture.

The body pose is only in the string as 8 codebook tokens, so it needs the pose tokenizer to become 23 joint
rotations; the joints then come from the synthetic world's kinematic tree (the same body the labeler measured) and
are placed in the picture with the person's weak-perspective camera ``[s, tx, ty]`` around its box, exactly as
:func:`fourm_core.sources.synthetic.humans.weak_perspective` defines it. Without a tokenizer (or when decoding
fails) only the boxes are drawn, with a note saying why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fourm_core.plugin import RenderContext, base_picture, distinct_colour
from fourm_human_poses.serializer import Human

MODALITY = "human_poses"
#: People at least this tall (output pixels) get a dot on every joint.
JOINT_DOTS_FROM = 48


def nearest_rotations(values: np.ndarray) -> np.ndarray:
    """(23, 3, 3) proper rotations nearest (SVD) to decoded values, which are never exactly rotation matrices."""
    u, _, vt = np.linalg.svd(np.asarray(values, np.float64).reshape(23, 3, 3))
    flip = np.linalg.det(u @ vt) < 0
    u[flip, :, -1] *= -1
    return u @ vt


def project_joints(human: Human, body_pose: np.ndarray) -> np.ndarray:
    """(24, 2) joint positions as fractions of the image: the posed body (root-relative, body frame) turned into
    the camera frame by the global orientation, then ``centre + side * s / 2 * (X + t)`` around the box."""
    from fourm_core.plugin import joints_from_pose

    body = joints_from_pose(nearest_rotations(body_pose).reshape(-1), np.asarray(human.betas))
    camera_frame = body @ np.asarray(human.global_orient, np.float64).reshape(3, 3).T
    x0, y0, x1, y1 = human.bbox
    side = max(x1 - x0, y1 - y0, 1e-6)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    s, tx, ty = human.camera
    return centre + side * s / 2 * (camera_frame[:, :2] + np.array([tx, ty]))


class HumanPoseDecoder:
    """Boxes, and the skeleton of every person when the pose tokenizer can decode their pose tokens."""

    def render(self, value: Sequence[Human | dict[str, Any]], context: RenderContext) -> np.ndarray:
        from PIL import ImageDraw

        from fourm_core.plugin import PARENTS

        humans = [h if isinstance(h, Human) else Human.model_validate(h) for h in value]
        picture = base_picture(context)
        draw = ImageDraw.Draw(picture)
        size = context.size
        poses, note = self._poses(humans, context)
        for i, human in enumerate(humans):
            colour = distinct_colour(i)
            x0, y0, x1, y1 = (v * size for v in human.bbox)
            draw.rectangle((x0, y0, max(x1 - 1, x0), max(y1 - 1, y0)), outline=colour, width=1)
            if poses is None:
                continue
            joints = project_joints(human, poses[i]) * size
            for j, parent in enumerate(PARENTS):
                if parent >= 0:
                    draw.line((*joints[parent], *joints[j]), fill=colour, width=max(1, size // 96))
            if (y1 - y0) >= JOINT_DOTS_FROM:  # dots would hide the bones of a small person
                for x, y in joints:
                    draw.ellipse((x - 1, y - 1, x + 1, y + 1), fill=(255, 255, 255))
        if note and humans:
            draw.rectangle((0, 0, int(draw.textlength(note)) + 4, 12), fill=(0, 0, 0))
            draw.text((2, 0), note, fill=(255, 255, 255))
        return np.asarray(picture, dtype=np.uint8)

    @staticmethod
    def _poses(humans: list[Human], context: RenderContext) -> tuple[list[np.ndarray] | None, str]:
        """The decoded body poses (207 values per person), or None and the note to show instead."""
        if not humans:
            return [], ""
        tokenizer = context.tokenizer(MODALITY)
        if tokenizer is None:
            return None, "no pose tokenizer"
        try:
            import torch

            ids = torch.tensor([list(h.pose_tokens) for h in humans], dtype=torch.long)
            poses = [np.asarray(p, np.float64).reshape(-1) for p in tokenizer.decode_raw(ids)]
            for pose in poses:
                if pose.shape != (207,) or not np.isfinite(pose).all():
                    raise ValueError(f"decoded pose of shape {pose.shape}, expected 207 finite values")
                nearest_rotations(pose)
        except Exception:  # an untrained or mismatched tokenizer: show the boxes, say why
            return None, "pose decoding failed"
        return poses, "" if getattr(tokenizer, "trained", True) else "untrained pose tokenizer"
