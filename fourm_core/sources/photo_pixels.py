"""Pixels of a decoded photo: any Pillow mode to 8-bit sRGB RGB (16-bit and float data, palettes, alpha, CMYK and
ICC profiles, each conversion noted), then the crop and resize in one resampling pass."""

from __future__ import annotations

import numpy as np
from PIL import Image

from fourm_core.sources.photo_types import ImageFolderConfig

#: ``Image.resize(reducing_gap=...)``: integer box reduction first, Lanczos on the last factor 3. Pillow documents 3
#: as indistinguishable from a full Lanczos pass, at a fraction of the cost for large images.
REDUCING_GAP = 3.0

_RESAMPLE = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
}


def _to_rgb(im: Image.Image, notes: list[str], config: ImageFolderConfig) -> Image.Image:
    """Any decoded mode -> 8-bit sRGB 'RGB', noting each conversion."""
    icc = im.info.get("icc_profile") if config.convert_icc else None
    fmt = im.format or "image"
    mode = im.mode
    if mode == "CMYK":
        return _cmyk_to_rgb(im, icc, notes)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        im = _high_depth_to_l(im, fmt, notes)
        mode = "L"
    if mode == "1":
        notes.append("bilevel expanded to RGB")
        return im.convert("RGB")
    if mode in ("P", "PA"):
        im = _palette_expand(im, notes)
        mode = im.mode
    if mode in ("LA", "La", "RGBA", "RGBa"):
        if mode in ("LA", "La"):
            notes.append("grayscale expanded to RGB")
        return _icc_rgb(_composite_on_white(im, notes), icc, notes)
    if mode == "L":
        notes.append("grayscale expanded to RGB")
        return im.convert("RGB")
    if mode != "RGB":
        notes.append(f"converted {mode} to RGB")
        im = im.convert("RGB")
    return _icc_rgb(im, icc, notes)


def _high_depth_to_l(im: Image.Image, fmt: str, notes: list[str]) -> Image.Image:
    """16-bit and wider single-channel images -> 8-bit 'L', keeping order and full range.

    16-bit data maps 0..65535 onto 0..255 (rounded, i.e. v / 257); Pillow's own ``convert('L')`` would clip at 255
    instead. 32-bit integers that fit in 16 bits are treated as 16-bit (Pillow opens some 16-bit files as 'I');
    anything else, and floats outside [0, 1], is stretched from its own min..max, which the note records.
    """
    a = np.asarray(im)
    if im.mode.startswith("I;16") or (im.mode == "I" and a.size and a.min() >= 0 and a.max() <= 65535):
        out = (a.astype(np.uint32) * 255 + 32767) // 65535
        notes.append(f"16-bit {fmt} scaled to 8 bits")
    elif im.mode == "F" and a.size and np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0:
        out = np.rint(a * 255.0)
        notes.append(f"float {fmt} in [0, 1] scaled to 8 bits")
    else:
        a = np.nan_to_num(a.astype(np.float64))
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        out = np.rint((a - lo) * (255.0 / (hi - lo))) if hi > lo else np.zeros_like(a)
        notes.append(f"{im.mode} {fmt} stretched from [{lo:g}, {hi:g}] to 8 bits")
    return Image.fromarray(out.astype(np.uint8), "L")


def _palette_expand(im: Image.Image, notes: list[str]) -> Image.Image:
    """Palette -> RGBA when the palette has transparency (then composited like any alpha), else RGB."""
    transparent = im.mode == "PA" or "transparency" in im.info
    notes.append("palette converted to RGB")
    return im.convert("RGBA" if transparent else "RGB")


def _composite_on_white(im: Image.Image, notes: list[str]) -> Image.Image:
    """Put the image on white: the colour under transparent pixels is arbitrary, white is what viewers show."""
    rgba = im.convert("RGBA")
    notes.append("alpha composited on white")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None, notes: list[str]) -> Image.Image:
    """CMYK -> RGB through the embedded ICC profile when there is one (print profiles differ a lot), else naively.

    Pillow already un-inverts Adobe-style CMYK JPEGs while decoding, so the naive path is right for those too.
    """
    notes.append("converted CMYK to RGB")
    if icc:
        converted = _icc_convert(im, icc, "CMYK")
        if converted is not None:
            notes.append(f"used embedded ICC profile {_icc_name(icc)!r}")
            return converted
        notes.append("embedded ICC profile unusable, ignored")
    return im.convert("RGB")


def _icc_rgb(im: Image.Image, icc: bytes | None, notes: list[str]) -> Image.Image:
    """RGB with a non-sRGB profile (Display P3 from phones, Adobe RGB from cameras) -> sRGB; sRGB is left as is."""
    if not icc or "srgb" in _icc_name(icc).lower().replace(" ", ""):
        return im
    converted = _icc_convert(im, icc, "RGB")
    if converted is None:
        notes.append("embedded ICC profile unusable, ignored")
        return im
    notes.append(f"converted from ICC profile {_icc_name(icc)!r} to sRGB")
    return converted


def _icc_convert(im: Image.Image, icc: bytes, colour_space: str) -> Image.Image | None:
    """Convert with LittleCMS; None when the profile is broken, of another colour space, or lcms is missing."""
    try:
        import io

        from PIL import ImageCms

        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if source.profile.xcolor_space.strip() != colour_space:
            return None
        srgb = ImageCms.createProfile("sRGB")
        return ImageCms.profileToProfile(im, source, srgb, outputMode="RGB")
    except Exception:
        return None


def _icc_name(icc: bytes) -> str:
    """The profile's description, for notes."""
    try:
        import io

        from PIL import ImageCms

        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()
    except Exception:
        return "unknown"


# --------------------------------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------------------------------


def _resize(
    im: Image.Image,
    size: tuple[int, int],
    box: tuple[int, int, int, int],
    scale: int,
    config: ImageFolderConfig,
    notes: list[str],
) -> Image.Image:
    """Crop and resize in one resampling pass (``box`` in draft-scaled pixels), letterboxing for 'pad'."""
    s = config.image_size
    w, h = size
    if config.crop == "center":
        out_size = (s, s)
    else:
        f = s / max(w, h)
        out_size = (max(1, min(s, round(w * f))), max(1, min(s, round(h * f))))
    if out_size[0] > box[2] - box[0] or out_size[1] > box[3] - box[1]:
        notes.append(f"upscaled from {w}x{h}")
    scaled_box = tuple(v / scale for v in box)
    resized = im.resize(out_size, _RESAMPLE[config.resample], box=scaled_box, reducing_gap=REDUCING_GAP)
    if out_size == (s, s):
        return resized
    canvas = Image.new("RGB", (s, s), config.pad_color)
    canvas.paste(resized, ((s - out_size[0]) // 2, (s - out_size[1]) // 2))
    return canvas
