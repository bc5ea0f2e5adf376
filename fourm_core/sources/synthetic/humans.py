"""Articulated human-like figures: an SMPL-like 24-joint kinematic tree, posed by relative joint rotations,
dressed in limb capsules, a torso, a head sphere and hair.

The outputs mirror the 4M-21 human-pose modality (from HMR2 / 4D-Humans): a 3x3 root orientation in the camera
frame, 23 relative 3x3 joint rotations (207 values), 10 shape parameters ("betas") and a weak-perspective camera.
Because the renderer draws exactly the posed skeleton, these parameters are exact for the pixels, which is the point
of a synthetic source. The body frame follows SMPL: x to the body's left, y up, z forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fourm_core.sources.synthetic.camera import Camera
from fourm_core.sources.synthetic.objects import Part

__all__ = ["JOINTS", "PARENTS", "POSES", "Figure", "figure_record", "joints_from_pose", "pose_figure"]

#: SMPL joint order.
JOINTS: tuple[str, ...] = (
    "pelvis",
    "l_hip",
    "r_hip",
    "spine1",
    "l_knee",
    "r_knee",
    "spine2",
    "l_ankle",
    "r_ankle",
    "spine3",
    "l_foot",
    "r_foot",
    "neck",
    "l_collar",
    "r_collar",
    "head",
    "l_shoulder",
    "r_shoulder",
    "l_elbow",
    "r_elbow",
    "l_wrist",
    "r_wrist",
    "l_hand",
    "r_hand",
)
#: SMPL kinematic tree: parent of each joint (-1 for the root).
PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
#: Rest offsets from the parent for an average adult (metres, body frame); the root row is the pelvis height.
OFFSETS = np.array(
    [
        (0, 0.93, 0),
        (0.085, -0.08, -0.01),
        (-0.085, -0.08, -0.01),
        (0, 0.11, -0.02),
        (0.01, -0.39, 0.0),
        (-0.01, -0.39, 0.0),
        (0, 0.13, 0.0),
        (0, -0.40, -0.03),
        (0, -0.40, -0.03),
        (0, 0.06, 0.02),
        (0, -0.05, 0.12),
        (0, -0.05, 0.12),
        (0, 0.21, -0.02),
        (0.075, 0.12, -0.01),
        (-0.075, 0.12, -0.01),
        (0, 0.09, 0.04),
        (0.11, 0.03, -0.01),
        (-0.11, 0.03, -0.01),
        (0.26, 0, 0),
        (-0.26, 0, 0),
        (0.25, 0, 0),
        (-0.25, 0, 0),
        (0.08, 0, 0),
        (-0.08, 0, 0),
    ]
)
LEGS = [4, 5, 7, 8]
ARMS = [18, 19, 20, 21, 22, 23]
SPINE = [3, 6, 9, 12]
POSES = ("standing", "walking", "arms_raised", "waving", "sitting_ground", "sitting_chair")


def _rx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def sample_pose(rng: np.random.Generator, kind: str) -> np.ndarray:
    """24 local joint rotations (index 0, the root, left as identity) for a pose family, with jitter.

    Signs in the SMPL body frame: a negative rotation about x swings a leg (or hanging arm) forward; about z, a
    negative angle lowers the left arm from the T-pose (positive for the right); about y, a negative angle bends the
    left elbow forward.
    """
    local = np.stack([_rx(a) @ _ry(b) @ _rz(c) for a, b, c in rng.normal(0, 0.05, (24, 3))])
    local[0] = np.eye(3)
    down = rng.uniform(1.2, 1.4)
    arm_l, arm_r = _rz(-down), _rz(down)
    elbow = rng.uniform(0.1, 0.4)
    el_l, el_r = _ry(-elbow), _ry(elbow)
    if kind == "walking":
        s = rng.uniform(0.3, 0.55)
        local[1], local[2] = _rx(-s), _rx(s)
        local[4], local[5] = _rx(0.1), _rx(rng.uniform(0.3, 0.7))
        local[7], local[8] = _rx(0.15), _rx(-0.2)
        arm_l, arm_r = _rx(0.8 * s) @ arm_l, _rx(-0.8 * s) @ arm_r
        el_l, el_r = _ry(-rng.uniform(0.3, 0.7)), _ry(rng.uniform(0.3, 0.7))
    elif kind == "arms_raised":
        up = rng.uniform(0.6, 1.4)
        arm_l, arm_r = _rz(up), _rz(-up)
    elif kind == "waving":
        arm_r = _rz(-rng.uniform(0.0, 0.4))
        el_r = _rz(-rng.uniform(1.3, 1.8))
    elif kind == "sitting_ground":
        local[1], local[2] = _rx(-1.5) @ _rz(-0.1), _rx(-1.5) @ _rz(0.1)
        bend = rng.uniform(0.0, 0.9)
        local[4], local[5] = _rx(bend), _rx(rng.uniform(0.0, 0.9))
        local[7], local[8] = _rx(-0.5), _rx(-0.5)
        local[3] = _rx(-0.15)
        arm_l, arm_r = _rx(0.5) @ arm_l, _rx(0.5) @ arm_r
    elif kind == "sitting_chair":
        local[1], local[2] = _rx(-1.55) @ _rz(-0.08), _rx(-1.55) @ _rz(0.08)
        local[4], local[5] = _rx(1.55), _rx(1.55)
        arm_l, arm_r = _rx(-0.35) @ arm_l, _rx(-0.35) @ arm_r
        el_l, el_r = _ry(-1.1), _ry(1.1)
    local[16], local[17] = arm_l @ local[16], arm_r @ local[17]
    local[18], local[19] = el_l @ local[18], el_r @ local[19]
    local[15] = _ry(rng.uniform(-0.5, 0.5)) @ _rx(rng.uniform(-0.2, 0.25))  # look around
    return local


@dataclass
class Figure:
    """One posed figure in world coordinates, with the parts that draw it."""

    joints: np.ndarray  # (24, 3) world
    local: np.ndarray  # (24, 3, 3) relative rotations; local[0] is the root's world orientation
    betas: np.ndarray  # (10,)
    pose: str
    parts: list[Part]


def _shape(betas: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Rest offsets and radii scales from the betas: b0 height, b1 girth, b2 leg length, b3 arm length,
    b4 shoulder width, b5 hip width, b6 head size, b7 torso length, b8 limb thickness, b9 neck length."""
    off = OFFSETS * (1 + 0.06 * betas[0])
    off[LEGS] *= 1 + 0.05 * betas[2]
    off[ARMS] *= 1 + 0.05 * betas[3]
    off[[13, 14, 16, 17], 0] *= 1 + 0.08 * betas[4]
    off[[1, 2], 0] *= 1 + 0.08 * betas[5]
    off[SPINE] *= 1 + 0.05 * betas[7]
    off[15] *= 1 + 0.1 * betas[9]
    off[0, 1] = OFFSETS[0, 1] * (1 + 0.06 * betas[0]) * (1 + 0.05 * betas[2])
    scales = {
        "girth": 1 + 0.1 * betas[1],
        "head": (1 + 0.05 * betas[6]) * (1 + 0.03 * betas[0]),
        "limb": (1 + 0.08 * betas[8]) * (1 + 0.05 * betas[1]),
    }
    return off, scales


def _forward(root: np.ndarray, local: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World joint positions and orientations; a child sits at its parent's position plus the parent's rotation
    applied to its rest offset (the SMPL convention: a joint's rotation moves its children)."""
    world = np.zeros((24, 3, 3))
    joints = np.zeros((24, 3))
    for j, p in enumerate(PARENTS):
        if p < 0:
            world[j], joints[j] = local[0], root
        else:
            world[j] = world[p] @ local[j]
            joints[j] = joints[p] + world[p] @ offsets[j]
    return joints, world


def joints_from_pose(body_pose: np.ndarray, betas: np.ndarray | None = None) -> np.ndarray:
    """Root-relative joint positions (24, 3) in metres of a body with 23 relative rotations (207 values) and shape
    ``betas`` (the average body when None), root unrotated: what pose errors (MPJPE) are measured on."""
    local = np.concatenate([np.eye(3)[None], np.asarray(body_pose, np.float64).reshape(23, 3, 3)])
    offsets, _ = _shape(np.zeros(10) if betas is None else np.asarray(betas, np.float64))
    joints, _ = _forward(np.zeros(3), local, offsets)
    return joints - joints[0]


SKIN = ((0.96, 0.80, 0.69), (0.87, 0.67, 0.52), (0.68, 0.48, 0.34), (0.45, 0.31, 0.22), (0.30, 0.20, 0.14))
HAIR = ((0.1, 0.07, 0.05), (0.3, 0.2, 0.1), (0.75, 0.6, 0.35), (0.5, 0.5, 0.5), (0.05, 0.05, 0.05))
TROUSERS = ((0.15, 0.2, 0.35), (0.1, 0.1, 0.1), (0.4, 0.35, 0.3), (0.3, 0.3, 0.32), (0.55, 0.5, 0.4))


def pose_figure(
    rng: np.random.Generator,
    position: np.ndarray,
    yaw: float,
    pose: str,
    seat_height: float | None = None,
) -> Figure:
    """A random body shape in pose family ``pose`` standing at ``position`` and facing ``yaw``.

    With ``seat_height`` the pelvis rests on a seat at that height instead of the feet on the ground. Parts whose
    colour is "main" are the shirt; the caller picks its colour.
    """
    betas = np.clip(rng.normal(0, 1, 10), -2.5, 2.5)
    offsets, sc = _shape(betas)
    local = sample_pose(rng, pose)
    local[0] = _ry(yaw) @ _rx(rng.normal(0, 0.04))
    joints, world = _forward(np.zeros(3), local, offsets)
    g, limb = sc["girth"], sc["limb"]
    skin, hair = SKIN[int(rng.integers(len(SKIN)))], HAIR[int(rng.integers(len(HAIR)))]
    trousers = TROUSERS[int(rng.integers(len(TROUSERS)))]
    shoes = (0.08, 0.08, 0.08) if rng.random() < 0.6 else (0.9, 0.9, 0.9)
    shirt = "main"
    sleeves = shirt if rng.random() < 0.5 else skin
    j = joints
    head_c = j[15] + world[15] @ np.array([0, 0.05, 0.01]) * sc["head"]
    pelvis_top = j[0] + world[0] @ np.array([0, 0.05, 0])
    caps = [
        (pelvis_top, j[6], 0.125 * g, shirt),
        (j[6], j[9] + world[9] @ np.array([0, 0.04, 0]), 0.14 * g, shirt),
        (j[16], j[17], 0.065 * g, shirt),
        (j[1], j[2], 0.095 * g, trousers),
        (j[12], head_c, 0.05 * limb, skin),
        (j[1], j[4], 0.075 * limb * g, trousers),
        (j[2], j[5], 0.075 * limb * g, trousers),
        (j[4], j[7], 0.055 * limb, trousers),
        (j[5], j[8], 0.055 * limb, trousers),
        (j[7], j[10], 0.045, shoes),
        (j[8], j[11], 0.045, shoes),
        (j[16], j[18], 0.05 * limb, shirt),
        (j[17], j[19], 0.05 * limb, shirt),
        (j[18], j[20], 0.04 * limb, sleeves),
        (j[19], j[21], 0.04 * limb, sleeves),
        (j[20], j[22], 0.035, skin),
        (j[21], j[23], 0.035, skin),
    ]
    head_r = 0.105 * sc["head"]
    hair_c = head_c + world[15] @ np.array([0, 0.025, -0.025]) * sc["head"]
    # lift so the lowest surface rests on the ground (or the pelvis on the seat)
    lowest = min(min(a[1], b[1]) - r for a, b, r, _ in caps)
    if seat_height is not None:
        lift = seat_height + 0.09 * g - j[0, 1]
    else:
        lift = -lowest
    shift = np.asarray(position, np.float64) + np.array([0, lift, 0])
    parts = [
        Part("capsule", (*(a + shift), *(b + shift), r), colour, "noise" if colour == "main" else None, 6.0, 0.15)
        for a, b, r, colour in caps
    ]
    parts.append(Part("sphere", (*(head_c + shift), head_r), skin))
    parts.append(Part("sphere", (*(hair_c + shift), head_r * 0.97), hair, "grain", 80.0, 0.2))
    return Figure(joints + shift, local, betas, pose, parts)


def weak_perspective(root_cam: np.ndarray, box_px: tuple[float, float, float, float], camera: Camera) -> list[float]:
    """HMR2's ``[s, tx, ty]`` for the square crop around a box: a body-frame point X (metres, relative to the root)
    lands near crop-normalised ``s / 2 * (X + t)``, i.e. pixel ``centre + side * s / 2 * (X + t)``.

    With the root at camera-frame depth Z, ``s = 2 f / (side Z)`` and ``t = root_xy + (c - centre) Z / f``, so
    HMR2's perspective camera translation ``(tx, ty, 2 f_crop / (s side_crop))`` puts the body back where it is.
    """
    x0, y0, x1, y1 = box_px
    side = max(x1 - x0, y1 - y0, 1e-6)
    bx, by = (x0 + x1) / 2, (y0 + y1) / 2
    z = max(float(root_cam[2]), 1e-3)
    s = 2 * camera.fx / (side * z)
    tx = root_cam[0] + (camera.cx - bx) * z / camera.fx
    ty = root_cam[1] + (camera.cy - by) * z / camera.fy
    return [float(s), float(tx), float(ty)]


def figure_record(fig: Figure, camera: Camera, box: tuple[float, float, float, float]) -> dict[str, Any]:
    """JSON-friendly record of a visible figure; ``box`` is its visible-pixel box as image fractions."""
    joints_cam = camera.to_camera(fig.joints)
    joints_2d = camera.project(joints_cam)
    root_cam = camera.rotation.T @ fig.local[0]
    size = camera.size
    box_px = tuple(v * size for v in box)
    return {
        "bbox": [float(v) for v in box],
        "joints_3d": joints_cam.tolist(),
        "joints_2d": joints_2d.tolist(),
        "global_orient": root_cam.reshape(-1).tolist(),
        "body_pose": fig.local[1:].reshape(-1).tolist(),
        "betas": fig.betas.tolist(),
        "camera": weak_perspective(joints_cam[0], box_px, camera),
        "pose": fig.pose,
    }
