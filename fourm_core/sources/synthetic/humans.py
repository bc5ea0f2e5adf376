"""Articulated human-like figures: an SMPL-like 24-joint skeleton, posed by relative joint rotations, built from
limb capsules and a head sphere.

The parameters follow the shapes of the 4M-21 human-pose modality: a 3x3 global orientation, 23 relative 3x3 joint
rotations (207 values), 10 shape parameters and a weak-perspective camera; the renderer gives them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fourm_core.sources.synthetic.geometry import Primitive

#: SMPL joint order and kinematic tree.
JOINTS = (
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
PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
#: Rest offsets from the parent (metres, y up, the figure faces +z), for a 1.7 m adult.
OFFSETS = np.array(
    [
        (0, 0.95, 0),
        (0.09, -0.07, 0),
        (-0.09, -0.07, 0),
        (0, 0.11, 0),
        (0, -0.40, 0.01),
        (0, -0.40, 0.01),
        (0, 0.13, 0),
        (0, -0.40, -0.03),
        (0, -0.40, -0.03),
        (0, 0.06, 0),
        (0, -0.05, 0.12),
        (0, -0.05, 0.12),
        (0, 0.20, 0),
        (0.07, 0.12, 0),
        (-0.07, 0.12, 0),
        (0, 0.10, 0.02),
        (0.11, 0.02, 0),
        (-0.11, 0.02, 0),
        (0.26, 0, 0),
        (-0.26, 0, 0),
        (0.25, 0, 0),
        (-0.25, 0, 0),
        (0.08, 0, 0),
        (-0.08, 0, 0),
    ]
)
#: Bones drawn as capsules: (child joint, radius at rest).
BONES = (
    (1, 0.07),
    (2, 0.07),
    (4, 0.065),
    (5, 0.065),
    (7, 0.05),
    (8, 0.05),
    (10, 0.04),
    (11, 0.04),
    (3, 0.13),
    (6, 0.14),
    (9, 0.15),
    (12, 0.055),
    (16, 0.05),
    (17, 0.05),
    (18, 0.045),
    (19, 0.045),
    (20, 0.035),
    (21, 0.035),
)
LEG_LENGTH_JOINTS = {4, 5, 7, 8}
ARM_JOINTS = {18, 19, 20, 21, 22, 23}


def axis_angle(v: np.ndarray) -> np.ndarray:
    """Rotation matrix of an axis-angle vector (Rodrigues)."""
    angle = float(np.linalg.norm(v))
    if angle < 1e-9:
        return np.eye(3)
    k = v / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def sample_pose(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """A pose family and 24 axis-angle joint rotations (root excluded later)."""
    aa = rng.normal(0, 0.06, (24, 3))
    kind = str(rng.choice(["standing", "walking", "arms_raised", "sitting", "waving"]))
    if kind == "walking":
        swing = rng.uniform(0.3, 0.6)
        aa[1, 0], aa[2, 0], aa[4, 0], aa[5, 0] = -swing, swing, swing * 0.8, 0.1
        aa[16, 2], aa[17, 2] = -1.2, 1.2
        aa[16, 0], aa[17, 0] = swing, -swing
    elif kind == "arms_raised":
        aa[16, 2], aa[17, 2] = rng.uniform(0.2, 0.8), -rng.uniform(0.2, 0.8)
    elif kind == "sitting":
        aa[1, 0], aa[2, 0], aa[4, 0], aa[5, 0] = -1.5, -1.5, 1.5, 1.5
        aa[16, 2], aa[17, 2] = -1.2, 1.2
    elif kind == "waving":
        aa[16, 2], aa[17, 2] = rng.uniform(-0.2, 0.4), 1.2
        aa[18, 1] = -1.6
    else:
        aa[16, 2], aa[17, 2] = -1.3, 1.3
    return kind, aa


@dataclass
class Figure:
    """One posed figure in world coordinates."""

    joints: np.ndarray  # (24, 3) world positions
    rotations: np.ndarray  # (24, 3, 3) local rotations (index 0 = root in the world)
    betas: np.ndarray  # (10,)
    pose_kind: str
    primitives: list[Primitive]


def build_figure(
    rng: np.random.Generator,
    position: np.ndarray,
    yaw: float,
    instance: int,
    semantic: int,
    clothes: tuple[float, float, float],
) -> Figure:
    """A random body shape and pose standing at ``position`` (on the ground) facing ``yaw``."""
    betas = np.clip(rng.normal(0, 1, 10), -3, 3)
    height = 1.0 + 0.06 * betas[0]
    girth = 1.0 + 0.08 * betas[1]
    offsets = OFFSETS * height
    offsets[list(LEG_LENGTH_JOINTS)] *= 1.0 + 0.04 * betas[2]
    offsets[list(ARM_JOINTS)] *= 1.0 + 0.04 * betas[3]
    kind, aa = sample_pose(rng)
    local = np.stack([axis_angle(v) for v in aa])
    local[0] = axis_angle(np.array([0.0, yaw, 0.0]))
    world_rot = np.zeros((24, 3, 3))
    joints = np.zeros((24, 3))
    for j, parent in enumerate(PARENTS):
        if parent < 0:
            world_rot[j], joints[j] = local[0], position + offsets[0]
        else:
            world_rot[j] = world_rot[parent] @ local[j]
            joints[j] = joints[parent] + world_rot[parent] @ offsets[j]
    if kind == "sitting":
        joints[:, 1] -= 0.35 * height  # sit down on something invisible: keep the feet on the ground
    lowest = joints[:, 1].min()
    joints[:, 1] += max(0.0, 0.05 - lowest)
    skin = (0.85, 0.65, 0.5)
    prims = [
        Primitive(
            "capsule",
            {"a": joints[PARENTS[c]], "b": joints[c], "radius": r * girth},
            clothes if c not in (20, 21, 12) else skin,
            semantic,
            instance,
            "plain",
        )
        for c, r in BONES
    ]
    prims.append(
        Primitive(
            "sphere",
            {"centre": joints[15] + world_rot[15] @ np.array([0, 0.06, 0]) * height, "radius": 0.11 * height},
            skin,
            semantic,
            instance,
        )
    )
    return Figure(joints, local, betas, kind, prims)


def figure_record(
    fig: Figure,
    cam_rot: np.ndarray,
    cam_pos: np.ndarray,
    fx: float,
    cx: float,
    cy: float,
    size: int,
    bbox: tuple[float, float, float, float],
) -> dict:
    """The JSON record of a figure in the camera frame (joints, rotations, shape, weak-perspective camera)."""
    joints_cam = (fig.joints - cam_pos) @ cam_rot  # world -> camera (x right, y down, z forward)
    z = np.maximum(joints_cam[:, 2], 1e-3)
    joints_2d = np.stack([fx * joints_cam[:, 0] / z + cx, fx * joints_cam[:, 1] / z + cy], axis=1)
    root_cam = cam_rot.T @ fig.rotations[0]
    scale = 2 * fx / (size * z[0])
    return {
        "bbox": [float(v) for v in bbox],
        "joints_3d": joints_cam.round(4).tolist(),
        "joints_2d": joints_2d.round(2).tolist(),
        "global_orient": root_cam.reshape(-1).round(6).tolist(),
        "body_pose": fig.rotations[1:].reshape(-1).round(6).tolist(),
        "betas": fig.betas.round(4).tolist(),
        "camera": [float(scale), float(joints_cam[0, 0] / z[0]), float(joints_cam[0, 1] / z[0])],
        "pose_kind": fig.pose_kind,
    }
