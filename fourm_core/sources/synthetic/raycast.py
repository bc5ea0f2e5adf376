"""Ray casting a whole scene: primitives grouped by kind, culled to (ray, primitive) pairs, nearest hit, shadows.

Why pairs: a per-primitive Python loop over full-image ray arrays costs ~30 numpy calls per primitive, which at
64 px is pure call overhead. Instead every primitive gets its exact screen rectangle (or, for shadow rays, its
rectangle in the sun's view), the (ray, primitive) pairs inside are enumerated with one vectorised ragged range, and
each primitive *kind* is intersected in a single batched call. The cost is then proportional to the pixels objects
cover, with a fixed number of numpy calls per scene whatever the number of primitives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fourm_core.sources.synthetic.camera import Camera
from fourm_core.sources.synthetic.geometry import KINDS, N_PARAMS, aabb, intersect, normal

__all__ = ["Hits", "Primitive", "PrimitiveSet", "shadowed", "trace_camera"]

TMIN = 1e-6
SHADOW_BIAS = 2e-3


@dataclass
class Primitive:
    """One shape with its labels: ``params`` follow :data:`geometry.N_PARAMS` for its kind."""

    kind: str
    params: tuple[float, ...]
    material: int  # index into the scene's material table
    semantic: int  # stored semantic value (panoptic index + 1)
    instance: int = 0  # 0 for stuff
    casts_shadow: bool = True


@dataclass
class PrimitiveSet:
    """All primitives of a scene compiled into per-kind parameter tables (global order = grouped by kind)."""

    kinds: list[tuple[str, int, int, np.ndarray]]  # (kind, first global index, end, params (m, count))
    material: np.ndarray  # (P,) int
    semantic: np.ndarray  # (P,) int16
    instance: np.ndarray  # (P,) int32
    casts_shadow: np.ndarray  # (P,) bool
    lo: np.ndarray  # (P, 3) world bounds
    hi: np.ndarray
    order: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # global index -> input index

    @classmethod
    def compile(cls, prims: list[Primitive]) -> PrimitiveSet:
        """Group primitives by kind (stable within a kind, so results never depend on dict order)."""
        kinds, order, los, his = [], [], [], []
        start = 0
        for kind in KINDS:
            idx = [i for i, p in enumerate(prims) if p.kind == kind]
            if not idx:
                continue
            table = np.array([prims[i].params for i in idx], np.float64).T.copy()
            if table.shape[0] != N_PARAMS[kind]:
                raise ValueError(f"{kind} needs {N_PARAMS[kind]} parameters, got {table.shape[0]}")
            lo, hi = aabb(kind, table)
            kinds.append((kind, start, start + len(idx), table))
            order += idx
            los.append(lo.T)
            his.append(hi.T)
            start += len(idx)
        ordered = [prims[i] for i in order]
        return cls(
            kinds=kinds,
            material=np.array([p.material for p in ordered], np.int64),
            semantic=np.array([p.semantic for p in ordered], np.int16),
            instance=np.array([p.instance for p in ordered], np.int32),
            casts_shadow=np.array([p.casts_shadow for p in ordered], bool),
            lo=np.concatenate(los) if los else np.zeros((0, 3)),
            hi=np.concatenate(his) if his else np.zeros((0, 3)),
            order=np.array(order, np.int64),
        )

    def kind_of(self, index: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Split global primitive indices by kind: (kind, positions in ``index``, local column in the table)."""
        out = []
        for kind, start, stop, _ in self.kinds:
            sel = np.flatnonzero((index >= start) & (index < stop))
            if len(sel):
                out.append((kind, sel, index[sel] - start))
        return out

    def table(self, kind: str) -> np.ndarray:
        """Parameter table ``(m, count)`` of one kind."""
        return next(t for k, _, _, t in self.kinds if k == kind)


def _ragged(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For segments of the given lengths: the segment of each element and its offset inside the segment."""
    owner = np.repeat(np.arange(len(counts)), counts)
    offset = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, offset


@dataclass
class Hits:
    """Nearest hit of every pixel ray: global primitive index (-1 = miss), distance, world point and unit normal."""

    prim: np.ndarray  # (N,) int64
    t: np.ndarray  # (N,) distance along the unit ray (inf on a miss)
    points: np.ndarray  # (3, H) world points of the hit pixels
    normals: np.ndarray  # (3, H) unit world normals facing the camera
    hit: np.ndarray  # (H,) flat pixel indices that hit something


def trace_camera(camera: Camera, prims: PrimitiveSet, dirs: np.ndarray, far: float) -> Hits:
    """Cast one ray per pixel centre; hits farther than ``far`` metres count as misses (sky, haze)."""
    n = dirs.shape[1]
    size = camera.size
    rect = camera.screen_rects(prims.lo, prims.hi)
    w = np.maximum(rect[:, 2] - rect[:, 0] + 1, 0)
    h = np.maximum(rect[:, 3] - rect[:, 1] + 1, 0)
    owner, k = _ragged(w * h)
    pix = (rect[owner, 1] + k // w[owner]) * size + rect[owner, 0] + k % w[owner]
    origin = camera.position[:, None]
    best = np.full(n, far)
    which = np.full(n, -1, np.int64)
    all_t, all_pix, all_prim = [], [], []
    for kind, sel, local in prims.kind_of(owner):
        p = pix[sel]
        t = intersect(kind, origin, dirs[:, p], prims.table(kind)[:, local], TMIN)
        keep = t < far
        all_t.append(t[keep])
        all_pix.append(p[keep])
        all_prim.append(owner[sel][keep])
    if all_t:
        t_cat, pix_cat, prim_cat = np.concatenate(all_t), np.concatenate(all_pix), np.concatenate(all_prim)
        np.minimum.at(best, pix_cat, t_cat)
        win = t_cat == best[pix_cat]
        # ties (coincident surfaces) go to the lowest primitive index: assign in decreasing order, last write wins
        wi = np.flatnonzero(win)[::-1]
        which[pix_cat[wi]] = prim_cat[wi]
    hit = np.flatnonzero(which >= 0)
    t_out = np.where(which >= 0, best, np.inf)
    pts = origin + dirs[:, hit] * best[hit]
    nrm = np.zeros_like(pts)
    for kind, sel, local in prims.kind_of(which[hit]):
        nrm[:, sel] = normal(kind, pts[:, sel], prims.table(kind)[:, local])
    nrm /= np.maximum(np.sqrt((nrm * nrm).sum(0)), 1e-30)
    # the side facing the camera (open surfaces and planes seen from behind)
    facing = (nrm * dirs[:, hit]).sum(0) > 0
    nrm[:, facing] *= -1
    return Hits(which, t_out, pts, nrm, hit)


def shadowed(prims: PrimitiveSet, points: np.ndarray, normals: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Whether each surface point ``(3, m)`` is hidden from the directional ``light`` (unit, pointing to the sun).

    Points are projected along the light onto a plane; each caster's bounds project to a rectangle there, and only
    points inside it (sorted along one axis, so each caster finds its candidates with a binary search) and below
    its top along the light are tested.
    """
    m = points.shape[1]
    out = np.zeros(m, bool)
    casters = np.flatnonzero(prims.casts_shadow & np.isfinite(prims.lo).all(1))
    if m == 0 or len(casters) == 0:
        return out
    helper = np.array([1.0, 0.0, 0.0]) if abs(light[0]) < 0.9 else np.array([0.0, 0.0, 1.0])
    u = np.cross(light, helper)
    u /= np.linalg.norm(u)
    v = np.cross(light, u)
    basis = np.stack([u, v, light])  # (3, 3)
    origin = points + normals * SHADOW_BIAS
    pu, pv, pl = basis @ origin
    bits = (np.arange(8)[:, None] >> np.arange(3)[None, :]) & 1
    corners = np.where(bits[None], prims.hi[casters][:, None, :], prims.lo[casters][:, None, :])  # (c, 8, 3)
    proj = corners @ basis.T  # (c, 8, 3)
    lo, hi = proj.min(1), proj.max(1)
    order = np.argsort(pu, kind="stable")
    su = pu[order]
    i0 = np.searchsorted(su, lo[:, 0], "left")
    i1 = np.searchsorted(su, hi[:, 0], "right")
    owner, k = _ragged(np.maximum(i1 - i0, 0))
    pt = order[i0[owner] + k]
    keep = (pv[pt] >= lo[owner, 1]) & (pv[pt] <= hi[owner, 1]) & (pl[pt] < hi[owner, 2])
    pt, prim = pt[keep], casters[owner[keep]]
    for kind, sel, local in prims.kind_of(prim):
        q = pt[sel]
        t = intersect(
            kind, origin[:, q], np.broadcast_to(light[:, None], (3, len(q))), prims.table(kind)[:, local], TMIN
        )
        out[q[np.isfinite(t)]] = True
    return out
