"""Closed-form ray/primitive intersections and surface normals, vectorised over (ray, primitive) pairs with numpy.

Hand-written because the world needs only six primitives with exact per-pixel depth, normals and ids, and must run
on one CPU core with nothing but numpy (a GL renderer would need a display or EGL stack). Vectors are stored as
``(3, n)`` arrays (one contiguous row per component): numpy is much faster on three length-``n`` rows than on ``n``
length-3 rows. Every kernel receives ray origins ``o`` (``(3, n)`` or ``(3, 1)``), *unit* directions ``d``
``(3, n)`` and the per-pair parameter rows ``q`` ``(m, n)`` of its primitive, and returns the hit distance along
``d`` (``inf`` on a miss or when the hit is closer than ``tmin``). The formulas for the capsule and the capped cone
follow Inigo Quilez's public derivations; the torus is sphere-traced (its quartic is not worth solving here).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["KINDS", "N_PARAMS", "aabb", "intersect", "normal"]

#: Primitive kinds in the order the renderer groups them, with the number of parameter rows each needs.
#: plane: normal(3), offset — points ``x`` with ``normal . x = offset``, seen from the side the normal points to.
#: sphere: centre(3), radius.  box: centre(3), half extents(3), local axes e0, e1, e2 in world coordinates (9).
#: capsule: a(3), b(3), radius.  cone: a(3), b(3), radius at a, radius at b (a capped frustum; a cylinder when
#: equal, a cone when one is 0).  torus: centre(3), axis(3), major radius, minor radius.
N_PARAMS: dict[str, int] = {"plane": 4, "sphere": 4, "box": 15, "capsule": 7, "cone": 8, "torus": 8}
KINDS: tuple[str, ...] = tuple(N_PARAMS)

INF = np.inf
TORUS_STEPS = 48


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _plane(o: np.ndarray, d: np.ndarray, q: np.ndarray, tmin: float) -> np.ndarray:
    denom = _dot(d, q[0:3])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (q[3] - _dot(o, q[0:3])) / denom
    return np.where((denom < -1e-12) & (t > tmin), t, INF)


def _sphere(o: np.ndarray, d: np.ndarray, q: np.ndarray, tmin: float) -> np.ndarray:
    oc = o - q[0:3]
    b = _dot(oc, d)
    h = b * b - (_dot(oc, oc) - q[3] * q[3])
    t = -b - np.sqrt(np.maximum(h, 0.0))
    return np.where((h >= 0) & (t > tmin), t, INF)


def _box(o: np.ndarray, d: np.ndarray, q: np.ndarray, tmin: float) -> np.ndarray:
    oc = o - q[0:3]
    near = np.full(d.shape[1], -INF)
    far = np.full(d.shape[1], INF)
    for axis in range(3):
        e = q[6 + 3 * axis : 9 + 3 * axis]
        ol, dl = _dot(oc, e), _dot(d, e)
        dl = np.where(np.abs(dl) < 1e-12, 1e-12, dl)
        half = q[3 + axis]
        t1, t2 = (-half - ol) / dl, (half - ol) / dl
        near = np.maximum(near, np.minimum(t1, t2))
        far = np.minimum(far, np.maximum(t1, t2))
    return np.where((near <= far) & (near > tmin), near, INF)


def _capsule(o: np.ndarray, d: np.ndarray, q: np.ndarray, tmin: float) -> np.ndarray:
    a, b, r = q[0:3], q[3:6], q[6]
    ba, oa = b - a, o - a
    baba, bard, baoa = _dot(ba, ba), _dot(ba, d), _dot(ba, oa)
    rdoa, oaoa = _dot(d, oa), _dot(oa, oa)
    qa = baba - bard * bard
    qb = baba * rdoa - baoa * bard
    qc = baba * oaoa - baoa * baoa - r * r * baba
    h = qb * qb - qa * qc
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-qb - np.sqrt(np.maximum(h, 0.0))) / qa
    y = baoa + t * bard
    body = (h >= 0) & (y > 0) & (y < baba)
    # not the body: the hemispherical cap on the side the body root fell
    oc = np.where(y <= 0, oa, o - b)
    cb = _dot(d, oc)
    ch = cb * cb - (_dot(oc, oc) - r * r)
    tc = -cb - np.sqrt(np.maximum(ch, 0.0))
    t = np.where(body, t, np.where((h >= 0) & (ch >= 0), tc, INF))
    return np.where(t > tmin, t, INF)


def _cone(o: np.ndarray, d: np.ndarray, q: np.ndarray, tmin: float) -> np.ndarray:
    a, b, ra, rb = q[0:3], q[3:6], q[6], q[7]
    ba, oa, ob = b - a, o - a, o - b
    m0, m1, m2 = _dot(ba, ba), _dot(oa, ba), _dot(d, ba)
    m3, m5, m9 = _dot(d, oa), _dot(oa, oa), _dot(ob, ba)
    with np.errstate(divide="ignore", invalid="ignore"):
        # caps: the disc at a when the origin is below it, the disc at b when above
        ta = -m1 / m2
        pa = oa + d * ta
        cap_a = (m1 < 0) & (_dot(pa, pa) < ra * ra) & (ta > tmin)
        tb = -m9 / m2
        pb = ob + d * tb
        cap_b = (m9 > 0) & (_dot(pb, pb) < rb * rb) & (tb > tmin)
        rr = ra - rb
        hy = m0 + rr * rr
        k2 = m0 * m0 - m2 * m2 * hy
        k1 = m0 * m0 * m3 - m1 * m2 * hy + m0 * ra * (rr * m2)
        k0 = m0 * m0 * m5 - m1 * m1 * hy + m0 * ra * (rr * m1 * 2.0 - m0 * ra)
        h = k1 * k1 - k2 * k0
        sq = np.sqrt(np.maximum(h, 0.0))
        # both roots: when the ray is steeper than the cone's side (k2 < 0) their order flips
        t = np.full(d.shape[1], INF)
        for root in ((-k1 - sq) / k2, (-k1 + sq) / k2):
            y = m1 + root * m2
            ok = (h >= 0) & (y >= 0) & (y <= m0) & (root > tmin) & (root < t)
            t = np.where(ok, root, t)
    return np.where(cap_a, ta, np.where(cap_b, tb, t))


def _torus_sdf(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    rel = p - q[0:3]
    h = _dot(rel, q[3:6])
    rho = np.sqrt(np.maximum(_dot(rel, rel) - h * h, 0.0))
    return np.sqrt((rho - q[6]) ** 2 + h * h) - q[7]


def _torus(o: np.ndarray, d: np.ndarray, q: np.ndarray, tmin: float) -> np.ndarray:
    """Sphere tracing from the entry of the bounding sphere; rays that do not converge count as misses."""
    n = d.shape[1]
    oc = np.broadcast_to(o - q[0:3], (3, n))
    bound = q[6] + q[7]
    b = _dot(oc, d)
    hb = b * b - (_dot(oc, oc) - bound * bound)
    out = np.full(n, INF)
    live = np.flatnonzero(hb > 0)
    if len(live) == 0:
        return out
    sq = np.sqrt(hb[live])
    t = np.maximum(-b[live] - sq, tmin)
    t_exit = -b[live] + sq
    oo, dd, qq = np.broadcast_to(o, (3, n))[:, live], d[:, live], q[:, live]
    for _ in range(TORUS_STEPS):
        dist = _torus_sdf(oo + dd * t, qq)
        t = t + dist
        done = dist < 1e-5
        if done.any():
            ok = done & (t < t_exit)
            out[live[ok]] = t[ok]
            keep = ~done & (t < t_exit)
            live, t, t_exit, oo, dd, qq = live[keep], t[keep], t_exit[keep], oo[:, keep], dd[:, keep], qq[:, keep]
            if len(live) == 0:
                break
    return np.where(out > tmin, out, INF)


def _n_plane(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return np.broadcast_to(q[0:3], p.shape)


def _n_sphere(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return p - q[0:3]


def _n_box(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    rel = p - q[0:3]
    local = np.stack([_dot(rel, q[6 + 3 * k : 9 + 3 * k]) / q[3 + k] for k in range(3)])
    axis = np.abs(local).argmax(axis=0)
    sign = np.sign(local[axis, np.arange(p.shape[1])])
    e = q[6:15].reshape(3, 3, -1)  # (axis, component, n)
    return e[axis, :, np.arange(p.shape[1])].T * sign


def _n_capsule(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    a, ba = q[0:3], q[3:6] - q[0:3]
    s = np.clip(_dot(p - a, ba) / _dot(ba, ba), 0.0, 1.0)
    return p - (a + ba * s)


def _n_cone(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    a, ba, ra, rb = q[0:3], q[3:6] - q[0:3], q[6], q[7]
    pa = p - a
    m0 = _dot(ba, ba)
    y = _dot(pa, ba)
    rr = ra - rb
    hy = m0 + rr * rr
    body = m0 * (m0 * pa + rr * ra * ba) - ba * hy * y
    body = body / np.maximum(np.sqrt(_dot(body, body)), 1e-30)
    axis = ba / np.sqrt(m0)
    # points on a cap: at the ends of the axis and inside its radius (the rim goes to the body)
    radial = pa - ba * (y / m0)
    rho2 = _dot(radial, radial)
    eps = 1e-6 * m0
    on_a = (y <= eps) & (rho2 < (ra * ra) * (1 - 1e-6))
    on_b = (y >= m0 - eps) & (rho2 < (rb * rb) * (1 - 1e-6))
    return np.where(on_a, -axis, np.where(on_b, axis, body))


def _n_torus(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    rel = p - q[0:3]
    axis = q[3:6]
    radial = rel - axis * _dot(rel, axis)
    rho = np.maximum(np.sqrt(_dot(radial, radial)), 1e-12)
    return rel - radial * (q[6] / rho)


_INTERSECT: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray, float], np.ndarray]] = {
    "plane": _plane,
    "sphere": _sphere,
    "box": _box,
    "capsule": _capsule,
    "cone": _cone,
    "torus": _torus,
}
_NORMAL: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "plane": _n_plane,
    "sphere": _n_sphere,
    "box": _n_box,
    "capsule": _n_capsule,
    "cone": _n_cone,
    "torus": _n_torus,
}


def intersect(kind: str, o: np.ndarray, d: np.ndarray, q: np.ndarray, tmin: float) -> np.ndarray:
    """Distance along unit ``d`` to the first hit beyond ``tmin`` of each (ray, primitive) pair; ``inf`` = miss."""
    return _INTERSECT[kind](o, d, q, tmin)


def normal(kind: str, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Outward surface normals (not normalised) at surface points ``p`` ``(3, n)`` of the pairs' primitives."""
    return _NORMAL[kind](p, q)


def aabb(kind: str, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World axis-aligned bounds ``(lo, hi)``, each ``(3, k)``, of ``k`` primitives (planes: +-inf)."""
    if kind == "plane":
        return np.full((3, q.shape[1]), -INF), np.full((3, q.shape[1]), INF)
    if kind == "sphere":
        return q[0:3] - q[3], q[0:3] + q[3]
    if kind == "box":
        e = np.abs(q[6:15].reshape(3, 3, -1))  # (axis, component, k)
        ext = (e * q[3:6][:, None, :]).sum(axis=0)
        return q[0:3] - ext, q[0:3] + ext
    if kind == "capsule":
        return np.minimum(q[0:3], q[3:6]) - q[6], np.maximum(q[0:3], q[3:6]) + q[6]
    if kind == "cone":
        r = np.maximum(q[6], q[7])
        return np.minimum(q[0:3], q[3:6]) - r, np.maximum(q[0:3], q[3:6]) + r
    if kind == "torus":
        r = q[6] + q[7]
        return q[0:3] - r, q[0:3] + r
    raise ValueError(f"unknown primitive kind {kind!r}")
