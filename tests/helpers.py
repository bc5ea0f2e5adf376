"""Helpers shared by the core tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from fourm_core.registry import ENTRY_POINT_GROUP, Registry

#: The example out-of-tree plugin installed by `make install`; tests about the 21 built-ins block it.
EXAMPLE_PLUGIN = "albedo"

#: The 19 model-facing keys of 4M-21 at 224 px and their ml-4m ids (reference appendix A).
OFFICIAL_KEYS = {
    "rgb@224": 20716,
    "caption": 32652,
    "det": 30982,
    "tok_rgb@224": 11606,
    "tok_depth@224": 20063,
    "tok_normal@224": 16656,
    "tok_semseg@224": 12515,
    "tok_clip@224": 11422,
    "t5_caption": 28551,
    "metadata": 1951,
    "human_poses": 30584,
    "color_palette": 12967,
    "sam_instance": 1938,
    "tok_canny_edge@224": 12520,
    "tok_sam_edge@224": 7842,
    "tok_dinov2@224": 26275,
    "tok_imagebind@224": 6200,
    "tok_dinov2_global": 29172,
    "tok_imagebind_global": 12099,
}

SPEC_TEMPLATE = """\
from fourm_core.hookspecs import hookimpl
from fourm_core.spec import ModalitySpec, grid_presets


def image_spec(name, key=None, **extra):
    fields = dict(name=name, key=key or f"tok_{name}", key_has_resolution=True, kind="image_tokens",
                  embedding="2d", vocabulary="own", masking="token", presets=grid_presets(1024, 256))
    fields.update(extra)
    return ModalitySpec(**fields)
"""


def installed_entry_points() -> list[EntryPoint]:
    """Entry points of the really installed plugins."""
    return list(entry_points(group=ENTRY_POINT_GROUP))


def registry_with(*extra: EntryPoint, disabled: set[str] | None = None, strict: bool = False) -> Registry:
    """The installed plugins plus ``extra`` distributions (the example plugin blocked unless ``disabled`` says)."""
    blocked = disabled if disabled is not None else {EXAMPLE_PLUGIN}
    return Registry([*installed_entry_points(), *extra], disabled=blocked, strict=strict)
