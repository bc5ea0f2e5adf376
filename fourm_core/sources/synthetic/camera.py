"""The pinhole camera: sampling a pose, primary rays through pixel centres, projection and screen-space bounds.

Conventions (shared by every output): the world is y-up metres with the ground at ``y = 0``; the camera frame is
x right, y down, z forward (OpenCV), so ``rotation`` (camera-to-world) has columns right, down, forward and a pixel
``(u, v)`` (its centre at ``u + 0.5``) sees the ray ``((u + 0.5 - cx) / fx, (v + 0.5 - cy) / fy, 1)``. Hit
distances along that un-normalised ray are z-depths, which is why depth is exact without a conversion step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Camera", "look_camera"]

NEAR = 0.05

#: The 12 edges of a box whose 8 corners are enumerated as bits (x, y, z) of the corner index.
_EDGES = np.array([(i, i | (1 << k)) for i in range(8) for k in range(3) if not i & (1 << k)])


@dataclass(frozen=True)
class Camera:
    """Intrinsics and pose of one scene's camera."""

    size: int
    fx: float
    fy: float
    cx: float
    cy: float
    position: np.ndarray  # (3,) world
    rotation: np.ndarray  # (3, 3) camera-to-world, columns right, down, forward

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit world directions ``(3, S*S)`` of the pixel-centre rays, and per pixel the z-depth of unit distance."""
        s = self.size
        centres = np.arange(s, dtype=np.float64) + 0.5
        x = np.broadcast_to(((centres - self.cx) / self.fx)[None, :], (s, s)).reshape(-1)
        y = np.broadcast_to(((centres - self.cy) / self.fy)[:, None], (s, s)).reshape(-1)
        inv = 1.0 / np.sqrt(x * x + y * y + 1.0)
        r = self.rotation
        dirs = np.stack([(r[k, 0] * x + r[k, 1] * y + r[k, 2]) * inv for k in range(3)])
        return dirs, inv

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points ``(..., 3)`` in the camera frame."""
        return (np.asarray(points, np.float64) - self.position) @ self.rotation

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Pixel coordinates ``(..., 2)`` (continuous, pixel ``i`` spans ``[i, i + 1)``) of camera-frame points."""
        z = np.maximum(points_cam[..., 2], 1e-6)
        return np.stack([self.fx * points_cam[..., 0] / z + self.cx, self.fy * points_cam[..., 1] / z + self.cy], -1)

    def screen_rects(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Inclusive pixel rectangles ``(k, 4)`` = x0, y0, x1, y1 whose pixel centres may see each world box.

        The part of a box in front of the near plane is a convex polytope with the box corners in front and the
        edge/near-plane crossings as vertices; its projection is bounded by theirs, so the rectangle is exact (not a
        bounding-sphere guess) and a box that straddles the camera still gets a tight rectangle. Empty rectangles
        have x0 > x1. Unbounded boxes (planes) cover the whole image.
        """
        k = lo.shape[0]
        rect = np.tile(np.array([0, 0, self.size - 1, self.size - 1]), (k, 1))
        finite = np.isfinite(lo).all(1) & np.isfinite(hi).all(1)
        if not finite.any():
            return rect
        bits = (np.arange(8)[:, None] >> np.arange(3)[None, :]) & 1  # (8, 3)
        corners = np.where(bits[None], hi[finite][:, None, :], lo[finite][:, None, :])  # (f, 8, 3)
        cam = (corners - self.position) @ self.rotation
        z = cam[..., 2]
        a, b = cam[:, _EDGES[:, 0]], cam[:, _EDGES[:, 1]]  # (f, 12, 3)
        za, zb = a[..., 2], b[..., 2]
        crosses = (za - NEAR) * (zb - NEAR) < 0
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(crosses, (NEAR - za) / (zb - za), 0.0)
        cut = a + (b - a) * w[..., None]
        pts = np.concatenate([cam, cut], axis=1)  # (f, 20, 3)
        valid = np.concatenate([z >= NEAR, crosses], axis=1)
        zz = np.where(valid, pts[..., 2], 1.0)
        u = self.fx * pts[..., 0] / zz + self.cx
        v = self.fy * pts[..., 1] / zz + self.cy
        big = 1e9
        u0 = np.where(valid, u, big).min(1)
        u1 = np.where(valid, u, -big).max(1)
        v0 = np.where(valid, v, big).min(1)
        v1 = np.where(valid, v, -big).max(1)
        # pixel i is seen when its centre i + 0.5 lies in [u0, u1]; one pixel of slack absorbs rounding
        x0 = np.clip(np.ceil(u0 - 0.5) - 1, 0, self.size)
        x1 = np.clip(np.floor(u1 - 0.5) + 1, -1, self.size - 1)
        y0 = np.clip(np.ceil(v0 - 0.5) - 1, 0, self.size)
        y1 = np.clip(np.floor(v1 - 0.5) + 1, -1, self.size - 1)
        rect[finite] = np.stack([x0, y0, x1, y1], 1).astype(np.int64)
        return rect

    def record(self) -> dict[str, Any]:
        """JSON-friendly intrinsics and pose (``rotation`` camera-to-world, row-major)."""
        forward = self.rotation[:, 2]
        return {
            "fx": float(self.fx),
            "fy": float(self.fy),
            "cx": float(self.cx),
            "cy": float(self.cy),
            "width": self.size,
            "height": self.size,
            "position": [float(v) for v in self.position],
            "rotation": self.rotation.tolist(),
            "pitch_degrees": float(np.degrees(np.arcsin(-forward[1]))),
            "yaw_degrees": float(np.degrees(np.arctan2(forward[0], forward[2]))),
            "fov_degrees": float(np.degrees(2 * np.arctan(self.size / 2 / self.fx))),
        }


def look_camera(size: int, position: np.ndarray, yaw: float, pitch: float, fov: float) -> Camera:
    """A level (no roll) camera at ``position`` looking along ``yaw`` (0 = +z, radians) and ``pitch`` down.

    ``fov`` is the full horizontal (= vertical, square images) field of view in radians.
    """
    forward = np.array([np.sin(yaw) * np.cos(pitch), -np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    right = np.cross(forward, np.array([0.0, 1.0, 0.0]))  # right x down = forward: a right-handed camera frame
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    focal = size / 2 / np.tan(fov / 2)
    rot = np.stack([right, down, forward], axis=1)
    return Camera(size, float(focal), float(focal), size / 2, size / 2, np.asarray(position, np.float64), rot)
