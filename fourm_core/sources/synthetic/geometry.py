"""Ray/primitive intersection, vectorised over rays with numpy.

Hand-written because the world needs only five closed-form primitives and exact per-pixel normals, ids and depth;
a general renderer (pyrender, Open3D) would bring an OpenGL stack that does not run headless here. Every function
takes ray origins ``o`` (3,) and directions ``d`` (n, 3) and returns hit distances ``t`` (n,) (``inf`` on a miss)
and world normals (n, 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EPS = 1e-4
INF = np.float32(np.inf)


@dataclass
class Primitive:
    """One renderable shape with its material and labels."""

    kind: str  # plane | sphere | box | cylinder | capsule
    params: dict[str, np.ndarray | float]
    colour: tuple[float, float, float]
    semantic: int  # stored semantic value (panoptic index + 1)
    instance: int = 0  # 0 for stuff
    texture: str = "plain"  # plain | checker | stripes | noise
    casts_shadow: bool = True
    bound: tuple[np.ndarray, float] | None = field(default=None)  # (centre, radius) bounding sphere

    def bounding_sphere(self) -> tuple[np.ndarray, float] | None:
        """A sphere enclosing the primitive (None for unbounded planes), used to cull rays cheaply."""
        if self.bound is not None or self.kind == "plane":
            return self.bound
        p = self.params
        if self.kind == "sphere":
            self.bound = (np.asarray(p["centre"]), float(p["radius"]))
        elif self.kind == "box":
            self.bound = (np.asarray(p["centre"]), float(np.linalg.norm(p["half"])))
        elif self.kind == "cylinder":
            c = np.asarray(p["base"]) + np.array([0, p["height"] / 2, 0])
            self.bound = (c, float(np.hypot(p["radius"], p["height"] / 2)))
        elif self.kind == "capsule":
            a, b = np.asarray(p["a"]), np.asarray(p["b"])
            self.bound = ((a + b) / 2, float(np.linalg.norm(b - a) / 2 + p["radius"]))
        return self.bound


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


def _plane(o: np.ndarray, d: np.ndarray, p: dict) -> tuple[np.ndarray, np.ndarray]:
    n = np.asarray(p["normal"], np.float64)
    denom = d @ n
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (float(p["offset"]) - o @ n) / denom
    t = np.where((denom < -1e-9) & (t > EPS), t, np.inf)
    return t, np.broadcast_to(n, d.shape)


def _sphere(o: np.ndarray, d: np.ndarray, p: dict) -> tuple[np.ndarray, np.ndarray]:
    c, r = np.asarray(p["centre"]), float(p["radius"])
    oc = o - c
    a = _dot(d, d)
    b = 2 * _dot(d, oc)
    disc = b * b - 4 * a * (_dot(oc, oc) - r * r)
    sq = np.sqrt(np.maximum(disc, 0))
    t0, t1 = (-b - sq) / (2 * a), (-b + sq) / (2 * a)
    t = np.where(t0 > EPS, t0, np.where(t1 > EPS, t1, np.inf))
    t = np.where(disc >= 0, t, np.inf)
    normal = (o + d * np.where(np.isfinite(t), t, 0)[:, None] - c) / r
    return t, normal


def _box(o: np.ndarray, d: np.ndarray, p: dict) -> tuple[np.ndarray, np.ndarray]:
    c, half, yaw = np.asarray(p["centre"]), np.asarray(p["half"]), float(p.get("yaw", 0.0))
    cy, sy = np.cos(yaw), np.sin(yaw)
    rot = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])  # local -> world
    ol, dl = (o - c) @ rot, d @ rot
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dl
        t1, t2 = (-half - ol) * inv, (half - ol) * inv
    tmin, tmax = np.nanmax(np.minimum(t1, t2), axis=1), np.nanmin(np.maximum(t1, t2), axis=1)
    t = np.where((tmax >= np.maximum(tmin, EPS)), np.where(tmin > EPS, tmin, tmax), np.inf)
    hit = ol + dl * np.where(np.isfinite(t), t, 0)[:, None]
    axis = np.abs(hit / half).argmax(axis=1)
    rows = np.arange(len(hit))
    nl = np.zeros_like(hit)
    nl[rows, axis] = np.sign(hit[rows, axis])
    return t, nl @ rot.T


def _cylinder(o: np.ndarray, d: np.ndarray, p: dict) -> tuple[np.ndarray, np.ndarray]:
    base, r, h = np.asarray(p["base"]), float(p["radius"]), float(p["height"])
    ox, oy, oz = o[:, 0] - base[0], o[:, 1], o[:, 2] - base[2]
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = 2 * (ox * d[:, 0] + oz * d[:, 2])
    disc = b * b - 4 * a * (ox * ox + oz * oz - r * r)
    with np.errstate(divide="ignore", invalid="ignore"):
        ts = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
        y = oy + ts * d[:, 1]
        side = np.where((disc >= 0) & (ts > EPS) & (y >= base[1]) & (y <= base[1] + h), ts, np.inf)
        ttop = (base[1] + h - oy) / d[:, 1]
    px, pz = ox + ttop * d[:, 0], oz + ttop * d[:, 2]
    top = np.where((ttop > EPS) & (px * px + pz * pz <= r * r), ttop, np.inf)
    t = np.minimum(side, top)
    hit = o + d * np.where(np.isfinite(t), t, 0)[:, None]
    normal = np.zeros_like(d)
    normal[:, 0], normal[:, 2] = (hit[:, 0] - base[0]) / r, (hit[:, 2] - base[2]) / r
    normal[top <= side] = (0, 1, 0)
    return t, normal


def _capsule(o: np.ndarray, d: np.ndarray, p: dict) -> tuple[np.ndarray, np.ndarray]:
    a, b, r = np.asarray(p["a"]), np.asarray(p["b"]), float(p["radius"])
    ba = b - a
    baba = ba @ ba
    # unit directions keep the quadratic well conditioned; t is rescaled at the end
    dl = np.linalg.norm(d, axis=1)
    rd = d / dl[:, None]
    oa = o - a
    bard, baoa, rdoa, oaoa = rd @ ba, oa @ ba, _dot(rd, oa), _dot(oa, oa)
    qa = baba - bard * bard
    qb = baba * rdoa - baoa * bard
    qc = baba * oaoa - baoa * baoa - r * r * baba
    h = qb * qb - qa * qc
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-qb - np.sqrt(np.maximum(h, 0))) / qa
    y = baoa + t * bard
    body = (h >= 0) & (y > 0) & (y < baba) & (t > EPS)
    t_out = np.where(body, t, np.inf)
    for end in (a, b):  # spherical caps
        oc = o - end
        bb = _dot(rd, oc)
        hh = bb * bb - (_dot(oc, oc) - r * r)
        tc = -bb - np.sqrt(np.maximum(hh, 0))
        t_out = np.where(~body & (hh >= 0) & (tc > EPS), np.minimum(t_out, tc), t_out)
    hit = o + rd * np.where(np.isfinite(t_out), t_out, 0)[:, None]
    s = np.clip((hit - a) @ ba / baba, 0, 1)
    normal = (hit - (a + s[:, None] * ba)) / r
    return t_out / dl, normal


INTERSECT = {"plane": _plane, "sphere": _sphere, "box": _box, "cylinder": _cylinder, "capsule": _capsule}


def rays_near(o: np.ndarray, d_unit: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """Mask of rays passing within ``radius`` of ``centre`` (bounding-sphere culling)."""
    oc = centre - o
    along = _dot(d_unit, oc)
    closest = _dot(oc, oc) - along * along
    return (closest <= radius * radius) & (along > -radius)


def trace(o: np.ndarray, d: np.ndarray, prims: list[Primitive]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit of every ray (origins ``o`` (n, 3), directions ``d`` (n, 3)): distance, primitive index (-1 for
    a miss) and world normal."""
    n = len(d)
    best = np.full(n, np.inf)
    which = np.full(n, -1)
    normals = np.zeros((n, 3))
    d_unit = d / np.linalg.norm(d, axis=1, keepdims=True)
    for k, prim in enumerate(prims):
        bound = prim.bounding_sphere()
        idx = np.flatnonzero(rays_near(o, d_unit, *bound)) if bound is not None else np.arange(n)
        if len(idx) == 0:
            continue
        t, nrm = INTERSECT[prim.kind](o[idx], d[idx], prim.params)
        closer = t < best[idx]
        sel = idx[closer]
        best[sel] = t[closer]
        which[sel] = k
        normals[sel] = nrm[closer]
    return best, which, normals


def occluded(o: np.ndarray, d: np.ndarray, prims: list[Primitive]) -> np.ndarray:
    """Whether each ray (a shadow ray towards the light) hits any shadow-casting primitive."""
    hit = np.zeros(len(d), bool)
    d_unit = d / np.linalg.norm(d, axis=1, keepdims=True)
    for prim in prims:
        bound = prim.bounding_sphere()
        if not prim.casts_shadow or bound is None:
            continue
        idx = np.flatnonzero(~hit & rays_near(o, d_unit, *bound))
        if len(idx):
            t, _ = INTERSECT[prim.kind](o[idx], d[idx], prim.params)
            hit[idx[np.isfinite(t)]] = True
    return hit
