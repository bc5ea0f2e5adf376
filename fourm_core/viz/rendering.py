"""Pictures of generated sequence outputs, drawn by the modality plugins' decoders.

Image-like outputs get pictures from their tokenizer's transform; a sequence output (boxes, poses, instances, a
palette, a record, text) only means something to the plugin that defines its format. So the core asks the
modality's first registered decoder (``fourm_register_decoders``) to draw the value its serializer parsed, and
keeps the decoder's mistakes from breaking generation: a decoder that raises gives a warning and no picture.

The small drawing helpers here (the input picture as a canvas, text and tables in PIL's default font, distinct
colours) are shared by the plugins so that every decoder draws in the same style; nothing here names a modality.
"""

from __future__ import annotations

import textwrap
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "RecordDecoder",
    "RenderContext",
    "base_picture",
    "distinct_colour",
    "fit_picture",
    "record_rows",
    "render_output",
    "stable_colour",
    "table_picture",
    "text_picture",
    "tokenizer_lookup",
]

#: Canvas colour when there is no input picture to draw on.
GREY = (128, 128, 128)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
#: Line height of PIL's default font (10 px) with a little leading, and the padding around text.
LINE_HEIGHT = 12
PAD = 3


def _no_tokenizer(name: str) -> Any | None:
    """The default tokenizer lookup: no trained tokenizer for any modality."""
    return None


def tokenizer_lookup(registry: Any, preset: str, directory: Any) -> Callable[[str], Any | None]:
    """``RenderContext.tokenizer`` for a trained tokenizer directory: a modality's tokenizer, or ``None`` when the
    directory is ``None`` or holds none for it (decoders then draw what they can without one)."""

    def lookup(name: str) -> Any | None:
        if directory is None:
            return None
        try:
            return registry.tokenizer(name, preset, directory)
        except Exception:  # noqa: BLE001 (missing or unreadable tokenizer: no tokens to decode, not an error)
            return None

    return lookup


@dataclass(frozen=True)
class RenderContext:
    """What a decoder may draw with, besides the value itself.

    ``image``: the input RGB picture as the model saw it ((S, S, 3) uint8), or None when there was none;
    ``size``: side of the square picture to return, in pixels; ``preset``: the preset the model runs in (e.g. to
    know the pixel size that pixel coordinates refer to when there is no image); ``tokenizer``: a modality's
    trained tokenizer by name, or None when there is none (per-item tokens such as pose or mask codes need it).
    """

    image: np.ndarray | None = None
    size: int = 128
    preset: str = "tiny"
    tokenizer: Callable[[str], Any | None] = _no_tokenizer


def render_output(registry: Any, modality: str, value: Any, context: RenderContext) -> np.ndarray | None:
    """The picture of ``value`` (what ``modality``'s serializer ``parse`` returned) drawn by the modality's first
    registered decoder: (size, size, 3) uint8, or None when no decoder is registered or it drew nothing.

    A decoder that raises must not cost the user the generation it is drawing: its error becomes a warning naming
    the modality, and the output simply has no picture."""
    if not registry.decoders(modality):
        return None
    try:
        decoder = registry.decoder(modality)
        picture = decoder.render(value, context)
        if picture is None:
            return None
        return fit_picture(picture, context.size)
    except Exception as exc:  # a plugin's bug or a malformed value: warn, never break generation
        warnings.warn(f"{modality}: its decoder could not draw the output: {exc!r}", RuntimeWarning, stacklevel=2)
        return None


def fit_picture(picture: Any, size: int) -> np.ndarray:
    """``picture`` (a PIL image or an (H, W), (H, W, 3) or (H, W, 4) array) as (size, size, 3) uint8."""
    from PIL import Image

    if isinstance(picture, Image.Image):
        array = np.asarray(picture.convert("RGB"))
    else:
        array = np.asarray(picture)
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise ValueError(f"a decoder returned an array of shape {array.shape}, expected (H, W, 3)")
        array = array[..., :3]
        if array.dtype != np.uint8:
            if np.issubdtype(array.dtype, np.floating) and float(np.nanmax(array, initial=0.0)) <= 1.0:
                array = array * 255.0
            array = np.clip(np.nan_to_num(array), 0, 255).astype(np.uint8)
    if array.shape[:2] != (size, size):
        array = np.asarray(Image.fromarray(np.ascontiguousarray(array)).resize((size, size), Image.BILINEAR))
    return np.ascontiguousarray(array, dtype=np.uint8)


def base_picture(context: RenderContext) -> Any:
    """The input picture scaled to the output size (a grey canvas without one), as a PIL RGB image to draw on."""
    from PIL import Image

    if context.image is None:
        return Image.new("RGB", (context.size, context.size), GREY)
    image = Image.fromarray(np.ascontiguousarray(fit_picture(context.image, context.image.shape[0])))
    return image.resize((context.size, context.size), Image.BILINEAR)


def distinct_colour(index: int) -> tuple[int, int, int]:
    """A saturated colour for the ``index``-th item; neighbours differ by the golden angle in hue."""
    import colorsys

    hue = (index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def stable_colour(name: str) -> tuple[int, int, int]:
    """A colour fixed by a name (a class name keeps its colour across pictures and runs)."""
    return distinct_colour(zlib.crc32(name.encode()) % 997)


def text_picture(
    lines: Sequence[str], size: int, wrap: bool = True, background: tuple[int, int, int] = WHITE
) -> np.ndarray:
    """``lines`` in PIL's default font on a plain square of ``size`` pixels.

    Lines are wrapped to the picture's width when ``wrap``; text that still does not fit is drawn at its natural
    size and scaled down as a whole, so a long table stays complete (if small) rather than cut off."""
    from PIL import Image, ImageDraw

    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    char_w = max(probe.textlength("abcdefghijklmnopqrstuvwxyz") / 26, 1.0)
    if wrap:
        width_chars = max(int((size - 2 * PAD) / char_w), 8)
        lines = [w for line in lines for w in (textwrap.wrap(line, width_chars) or [""])]
    lines = list(lines) or [""]
    width = int(max(max(probe.textlength(line) for line in lines) + 2 * PAD, size))
    height = max(len(lines) * LINE_HEIGHT + 2 * PAD, size)
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), background)
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((PAD, PAD + i * LINE_HEIGHT), line, fill=BLACK)
    if side != size:
        canvas = canvas.resize((size, size), Image.LANCZOS)
    return np.asarray(canvas, dtype=np.uint8)


def _format(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return str(value)
    number = float(value)
    return str(int(number)) if number.is_integer() else f"{number:.4g}"


def record_rows(value: Any) -> list[tuple[str, str]]:
    """``(name, text)`` rows of a record: a flat mapping gives one row per entry; a mapping of mappings (a group
    of records, e.g. every member of a modality group) gives a title row per record and then its entries."""
    if not isinstance(value, Mapping):
        return [("", str(value))]
    if value and all(isinstance(v, Mapping) for v in value.values()):
        rows: list[tuple[str, str]] = []
        for title, record in value.items():
            rows.append((f"[{title}]", ""))
            rows += [(f"  {name}", _format(v)) for name, v in record.items()]
        return rows
    return [(str(name), _format(v)) for name, v in value.items()]


def table_picture(rows: Sequence[tuple[str, str]], size: int) -> np.ndarray:
    """``name: value`` lines on white (a title row has no value), never wrapped so that columns stay intact."""
    lines = [f"{name}: {text}" if text else name for name, text in rows] or ["(empty)"]
    return text_picture(lines, size, wrap=False)


class RecordDecoder:
    """A decoder for record-like values (``{field: value}``, or a group's ``{member: {field: value}}``): every
    field as a ``name: value`` line on white. Shared by plugins whose values are records (metadata), which
    register ``factory="fourm_core.viz.rendering:RecordDecoder"`` instead of each writing the same class."""

    def render(self, value: Mapping[str, Any], context: RenderContext) -> np.ndarray:
        return table_picture(record_rows(value), context.size)
