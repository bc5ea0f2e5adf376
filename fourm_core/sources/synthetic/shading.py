"""Materials, procedural textures, sky and lighting: albedo and the shaded sRGB image from the hit buffers.

Colours are specified in display (sRGB) values because that is how the named palette is chosen and how captions
name them; albedo is stored linear (``srgb ** 2.2``) because it is a reflectance, and lighting happens in linear
space before the result is encoded back to sRGB. Textures are functions of the world hit point, so they are
seamless, resolution independent and need no UV mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["PALETTE", "Lighting", "MaterialTable", "albedo_at", "shade", "sky_colour", "to_linear"]

GAMMA = 2.2

#: The named object palette (sRGB). Captions use these names; only colours actually rendered are mentioned.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.80, 0.12, 0.10),
    "green": (0.18, 0.62, 0.22),
    "blue": (0.14, 0.30, 0.85),
    "yellow": (0.95, 0.84, 0.16),
    "white": (0.93, 0.93, 0.90),
    "black": (0.09, 0.09, 0.10),
    "orange": (0.96, 0.52, 0.10),
    "purple": (0.52, 0.20, 0.66),
    "grey": (0.52, 0.52, 0.54),
    "brown": (0.46, 0.29, 0.14),
    "pink": (0.96, 0.58, 0.72),
}

#: Texture ids. Each modulates the base colour by the world hit point; ``scale`` is in cycles per metre.
TEXTURES: tuple[str, ...] = (
    "plain",
    "checker",
    "stripes",
    "noise",
    "grain",
    "planks",
    "bricks",
    "windows",
    "road",
    "waves",
    "court",
    "snowcap",
    "tiles",
    "grid",
)
TEXTURE_ID = {name: i for i, name in enumerate(TEXTURES)}


def to_linear(srgb: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    """Linear reflectance of an sRGB colour (a plain power law: exactness is irrelevant, consistency is not)."""
    return np.asarray(srgb, np.float64) ** GAMMA


@dataclass
class MaterialTable:
    """Per-scene materials, deduplicated: base and alternate colour (linear), texture id, scale and amplitude."""

    keys: dict[tuple, int] = field(default_factory=dict)
    rows: list[tuple] = field(default_factory=list)

    def add(
        self,
        srgb: tuple[float, float, float],
        texture: str = "plain",
        scale: float = 1.0,
        amp: float = 0.2,
        alt: tuple[float, float, float] | None = None,
    ) -> int:
        """Index of a material (created on first use). ``alt`` is the second colour of two-colour textures."""
        alt_rgb = tuple(alt) if alt is not None else tuple(float(c) * (1 - amp) for c in srgb)
        key = (tuple(round(float(c), 4) for c in srgb), texture, round(scale, 4), round(amp, 4), alt_rgb)
        if key not in self.keys:
            self.keys[key] = len(self.rows)
            self.rows.append((srgb, TEXTURE_ID[texture], scale, amp, alt_rgb))
        return self.keys[key]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """base (3, K) linear, alt (3, K) linear, texture (K,), scale (K,), amp (K,)."""
        base = to_linear(np.array([r[0] for r in self.rows]).reshape(-1, 3)).T
        alt = to_linear(np.array([r[4] for r in self.rows]).reshape(-1, 3)).T
        tex = np.array([r[1] for r in self.rows], np.int64)
        return base, alt, tex, np.array([r[2] for r in self.rows]), np.array([r[3] for r in self.rows])


def _hash(*cells: np.ndarray) -> np.ndarray:
    """A cheap deterministic per-cell random number in [0, 1) (the classic fract-sin hash)."""
    acc = np.zeros_like(cells[0], dtype=np.float64)
    for c, k in zip(cells, (12.9898, 78.233, 37.719)):
        acc = acc + c * k
    x = np.sin(acc) * 43758.5453
    return x - np.floor(x)


def _smooth_noise(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Smooth pseudo-noise in [0, 1] from a few incommensurate sines (cheaper than lattice noise)."""
    n = np.sin(x * 1.7 + np.sin(z * 1.3) * 1.9) * np.cos(z * 1.9 + np.sin(x * 0.7 + y) * 1.4)
    n = n + 0.5 * np.sin(x * 4.1 - z * 3.3 + y * 2.1)
    return np.clip(0.5 + n / 3.0, 0.0, 1.0)


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def _mix(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    return a + (b - a) * w


def albedo_at(points: np.ndarray, material: np.ndarray, table: MaterialTable) -> np.ndarray:
    """Linear albedo ``(3, n)`` at world points ``(3, n)`` with material indices ``(n,)``."""
    base_t, alt_t, tex_t, scale_t, amp_t = table.arrays()
    base, alt = base_t[:, material], alt_t[:, material]
    out = base.copy()
    tex = tex_t[material]
    for tid in np.unique(tex):
        name = TEXTURES[tid]
        if name == "plain":
            continue
        sel = np.flatnonzero(tex == tid)
        # a small offset keeps surfaces at round heights (the ground at y = 0) off cell boundaries, where floor()
        # would flicker between two cells from pixel to pixel
        x, y, z = points[0, sel] + 0.0137, points[1, sel] + 0.0137, points[2, sel] + 0.0137
        s, amp = scale_t[material[sel]], amp_t[material[sel]]
        b, a = base[:, sel], alt[:, sel]
        if name == "checker":
            w = (np.floor(x * s) + np.floor(y * s) + np.floor(z * s)) % 2
            col = _mix(b, a, w)
        elif name == "stripes":
            col = _mix(b, a, np.floor(y * s) % 2)
        elif name == "noise":
            col = b * (1 - amp * _smooth_noise(x * s, y * s, z * s))
        elif name == "grain":
            g = _hash(np.floor(x * s), np.floor(y * s), np.floor(z * s))
            col = b * (1 - amp * g) * (1 - 0.5 * amp * _smooth_noise(x * 0.5, y, z * 0.5))
        elif name == "planks":
            plank = np.floor(x * s)
            board = np.floor(z * s * 0.25 + _hash(plank) * 4)
            shade = 1 - amp * _hash(plank, board)
            seam = (_frac(x * s) < 0.06) | (_frac(z * s * 0.25 + _hash(plank) * 4) < 0.015)
            col = b * shade * np.where(seam, 0.6, 1.0)
        elif name == "bricks":
            h = x + z
            row = np.floor(y * s)
            offset = (row % 2) * 0.5
            mortar = (_frac(y * s) < 0.12) | (_frac(h * s * 0.5 + offset) < 0.06)
            col = np.where(mortar, a, b * (1 - amp * _hash(row, np.floor(h * s * 0.5 + offset))))
        elif name == "windows":
            h = x + z
            win = (np.abs(_frac(h * s) - 0.5) < 0.22) & (np.abs(_frac(y * s * 0.8) - 0.55) < 0.25) & (y > 1.0)
            col = np.where(win, a * (0.7 + 0.6 * _hash(np.floor(h * s), np.floor(y * s * 0.8))), b)
        elif name == "road":
            line = (np.abs(x) < 0.09) & (_frac(z / 4.0) < 0.45)
            edge = np.abs(np.abs(x) - s) < 0.1  # scale carries the distance of the edge lines from the centre
            col = np.where(line | edge, a, b * (1 - amp * _smooth_noise(x * 2, y, z * 2)))
        elif name == "waves":
            w = 0.5 + 0.5 * np.sin(z * s + 0.8 * np.sin(x * 0.35 + z * 0.1))
            col = _mix(b, a, w * amp + (1 - amp) * 0.5 * _hash(np.floor(x * 2), np.floor(z * 4)) * amp)
        elif name == "court":
            fx, fz = _frac(x / s + 0.5), _frac(z / s)
            line = (np.abs(fx - 0.5) > 0.49) | (fz < 0.012 * s) | (np.abs(x) < 0.05)
            col = np.where(line, a, b * (1 - amp * _smooth_noise(x, y, z)))
        elif name == "snowcap":
            col = np.where(y > s * (1 + 0.12 * np.sin(x * 0.2 + z * 0.15)), a, b * (1 - amp * _smooth_noise(x, y, z)))
        elif name == "tiles":
            grout = (_frac(x * s) < 0.05) | (_frac(z * s) < 0.05)  # floor tiles: the horizontal plane only
            col = np.where(grout, a, b * (1 - amp * _hash(np.floor(x * s), np.floor(z * s))))
        elif name == "grid":
            mesh = (_frac(x * s) < 0.2) | (_frac(y * s) < 0.2) | (_frac(z * s) < 0.2)
            col = np.where(mesh, a, b)
        else:  # pragma: no cover - TEXTURES and this chain are edited together
            raise ValueError(name)
        out[:, sel] = col
    return np.clip(out, 0.0, 1.0)


@dataclass(frozen=True)
class Lighting:
    """One directional light (the sun or a ceiling light), hemispheric ambient and distance haze."""

    direction: np.ndarray  # (3,) unit, pointing towards the light
    sun: np.ndarray  # (3,) linear radiance
    sky_ambient: np.ndarray  # (3,) linear, from above
    ground_ambient: np.ndarray  # (3,) linear, bounced from below
    zenith: np.ndarray  # (3,) linear sky colour overhead
    horizon: np.ndarray  # (3,) linear sky colour at the horizon (also the haze colour)
    haze: float  # metres over which distant surfaces fade to the horizon colour (inf: no haze)


def sky_colour(dirs: np.ndarray, light: Lighting) -> np.ndarray:
    """Linear sky colour ``(3, n)`` for unit world directions: a horizon-to-zenith gradient and a sun glow."""
    up = np.clip(dirs[1], 0.0, 1.0)
    w = np.sqrt(np.clip(up * 2.2, 0.0, 1.0))
    col = light.horizon[:, None] * (1 - w) + light.zenith[:, None] * w
    glow = np.clip(light.direction @ dirs, 0.0, 1.0) ** 48
    return np.clip(col + 0.5 * glow * light.sun[:, None] / max(float(light.sun.max()), 1e-6), 0.0, 1.0)


def shade(
    albedo: np.ndarray, normals: np.ndarray, in_shadow: np.ndarray, distance: np.ndarray, light: Lighting
) -> np.ndarray:
    """Linear radiance ``(3, n)``: Lambert sun (zero in shadow) + hemispheric ambient, then haze by distance."""
    lambert = np.clip(light.direction @ normals, 0.0, 1.0) * ~in_shadow
    up = 0.5 + 0.5 * normals[1]
    ambient = light.sky_ambient[:, None] * up + light.ground_ambient[:, None] * (1 - up)
    radiance = albedo * (ambient + light.sun[:, None] * lambert)
    if np.isfinite(light.haze):
        fog = 1 - np.exp(-distance / light.haze)
        radiance = radiance + (light.horizon[:, None] - radiance) * fog
    return radiance


def encode_srgb(linear: np.ndarray) -> np.ndarray:
    """uint8 display values of linear radiance (clipped; a plain gamma curve)."""
    return (np.clip(linear, 0.0, 1.0) ** (1 / GAMMA) * 255 + 0.5).astype(np.uint8)
