"""Pictures of generated sequence outputs, drawn by the plugins' decoders, on real synthetic scenes.

Every value here takes the path generation takes: a synthetic scene is labelled by the plugin's default labeler,
serialized by its serializer and parsed back by the model key's serializer, then drawn by
:func:`render_output`. Pose and mask tokens need trained tokenizers, which take minutes to fit; the geometry is
checked with an oracle tokenizer that decodes each row of tokens to the scene's true item (so what is drawn can be
compared with the truth), and the real tokenizer class (untrained) is run through the same path for its shapes.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from fourm_core.labeling.api import LabelContext, SampleView, build_labeler
from fourm_core.registry import Registry
from fourm_core.sources.adapters import SyntheticSource
from fourm_core.spec import ModalityKind
from fourm_core.viz.rendering import (
    RenderContext,
    base_picture,
    fit_picture,
    record_rows,
    render_output,
    table_picture,
)
from helpers import EXAMPLE_PLUGIN, registry_with

IMAGE = 64  # the tiny preset's image side
TILE = 128  # output tile: every pixel of the scene is 2x2 pixels of the picture
LABELLED = (
    "rgb",
    "depth",
    "normal",
    "semseg",
    "caption",
    "det",
    "human_poses",
    "sam_instance",
    "color_palette",
    "metadata_image",
    "metadata_semantic",
    "metadata_geometric",
)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(disabled={EXAMPLE_PLUGIN}, strict=False)


def _label(registry: Registry, record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every modality of one scene by its default labeler, dependencies first (as ``fourm data label`` does)."""
    context = LabelContext("tiny", IMAGE, tuple(record), modalities={m.name: m.spec for m in registry.modalities()})
    labels: dict[str, dict[str, Any]] = {}
    for name in LABELLED:
        spec = registry.labelers(name)[0]
        labels[name] = build_labeler(spec, registry.get(name).spec, context).label(SampleView(0, record, labels))
    return labels


@pytest.fixture(scope="module")
def scene(registry: Registry) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The first scene with two or more boxes and instances and at least one person, and its labels."""
    source = SyntheticSource(12, IMAGE, seed=3, options={"humans": (1, 3)})
    for i in range(len(source)):
        record = source.record(i)
        labels = _label(registry, record)
        if len(labels["det"]["boxes"]) >= 2 and len(labels["sam_instance"]["boxes"]) >= 2 and record["humans"]:
            return record, labels
    raise AssertionError("no scene with boxes, instances and people")


def _through_text(registry: Registry, key: str, value: Any) -> Any:
    """``value`` serialized and parsed back by the key's serializer, as generation parses what the model wrote."""
    serializer = registry.key_serializer(key, "tiny")
    return serializer.parse(serializer.serialize(value))


def _changed(picture: np.ndarray, before: np.ndarray) -> np.ndarray:
    return np.abs(picture.astype(int) - before.astype(int)).sum(-1) > 0


def _tile(mask: np.ndarray) -> np.ndarray:
    """A scene-sized boolean map at the tile's size (each pixel becomes a 2x2 block)."""
    return np.kron(mask.astype(np.uint8), np.ones((TILE // IMAGE, TILE // IMAGE), np.uint8)) > 0


class OracleTokenizer:
    """Decodes a row of tokens whose first code is ``k`` to the ``k``-th true item: what a perfect tokenizer does."""

    trained = True

    def __init__(self, items: Sequence[np.ndarray]) -> None:
        self.items = list(items)

    def decode_raw(self, ids: Any) -> list[np.ndarray]:
        return [self.items[int(row[0])] for row in ids]


def _context(record: dict[str, Any], **tokenizers: Any) -> RenderContext:
    return RenderContext(record["rgb"], TILE, "tiny", lambda name: tokenizers.get(name))


# ------------------------------------------------------------------------------------------------------ the core


def test_every_sequence_modality_has_a_decoder_that_draws_its_examples(registry: Registry) -> None:
    sequences = [m for m in registry.modalities() if m.spec.kind == ModalityKind.SEQUENCE]
    assert {m.name for m in sequences} >= {"caption", "det", "human_poses", "sam_instance", "color_palette"}
    rng = random.Random(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a decoder that raised would warn
        for m in sequences:
            assert registry.decoders(m.name), f"{m.name} has no decoder"
            serializer = registry.key_serializer(m.spec.key, "tiny")
            for image in (None, np.zeros((IMAGE, IMAGE, 3), np.uint8)):
                value = serializer.parse(serializer.serialize(serializer.example(rng)))
                picture = render_output(registry, m.name, value, RenderContext(image, 96))
                assert picture is not None and picture.shape == (96, 96, 3) and picture.dtype == np.uint8, m.name


def test_no_decoder_gives_no_picture(registry: Registry) -> None:
    assert registry.decoders("depth") == []
    assert render_output(registry, "depth", np.zeros((4, 4)), RenderContext()) is None


BROKEN_PLUGIN = """
from fourm_core.spec import DecoderSpec, PresetLayout

@hookimpl
def fourm_register_modalities(register):
    layout = {"paper": PresetLayout(max_tokens=8), "tiny": PresetLayout(max_tokens=8)}
    for name in ("scribble", "doodle", "sketch"):
        register(ModalitySpec(name=name, key=name, kind="sequence", embedding="1d", vocabulary="text",
                              masking="span", presets=layout))

@hookimpl
def fourm_register_decoders(register):
    register(DecoderSpec(modality="scribble", factory="{module}:Raising"))
    register(DecoderSpec(modality="doodle", factory="{module}:Nowhere"))
    register(DecoderSpec(modality="sketch", factory="{module}:Small"))

class Raising:
    def render(self, value, context):
        raise ZeroDivisionError("the plugin's own bug")

class Small:
    def render(self, value, context):
        import numpy as np
        return np.full((3, 5), 200, np.uint8)
"""


def test_a_decoder_that_raises_warns_and_gives_no_picture(make_dist) -> None:
    module = "fourm_scribble_plugin"
    reg = registry_with(make_dist("fourm-scribble", "scribble", BROKEN_PLUGIN.replace("{module}", module)))
    with pytest.warns(RuntimeWarning, match=r"scribble.*ZeroDivisionError.*own bug"):
        assert render_output(reg, "scribble", "anything", RenderContext()) is None
    with pytest.warns(RuntimeWarning, match=r"doodle.*Nowhere"):  # a factory that cannot be imported
        assert render_output(reg, "doodle", "anything", RenderContext()) is None
    small = render_output(reg, "sketch", "anything", RenderContext(size=40))  # any picture is fitted to the tile
    assert small is not None and small.shape == (40, 40, 3) and (small == 200).all()


def test_pictures_are_fitted_to_the_tile() -> None:
    assert fit_picture(np.ones((10, 20), np.float32), 8).shape == (8, 8, 3)
    assert (fit_picture(np.ones((8, 8, 3), np.float32), 8) == 255).all()  # floats in [0, 1] are scaled
    assert fit_picture(np.zeros((8, 8, 4), np.uint8), 8).shape == (8, 8, 3)
    with pytest.raises(ValueError, match="shape"):
        fit_picture(np.zeros((8, 8, 2), np.uint8), 8)
    grey = np.asarray(base_picture(RenderContext(None, 16)))
    assert grey.shape == (16, 16, 3) and (grey == 128).all()


# ------------------------------------------------------------------------------------------------------ plugins


def test_det_boxes_are_drawn_on_their_borders_and_nowhere_else(registry: Registry, scene) -> None:
    from fourm_det.decoders import box_pixels

    record, labels = scene
    boxes = _through_text(registry, "det", labels["det"]["boxes"])
    context = _context(record)
    before = np.asarray(base_picture(context))
    box = max(boxes, key=lambda b: (b.xmax - b.xmin) * (b.ymax - b.ymin))
    changed = _changed(render_output(registry, "det", [box], context), before)
    x0, y0, x1, y1 = box_pixels(box, TILE)
    border = np.zeros_like(changed)
    border[y0 : y1 + 1, [x0, x1]] = border[[y0, y1], x0 : x1 + 1] = True
    assert changed[border].mean() > 0.8
    outside = np.ones_like(changed)
    outside[y0 : y1 + 1, x0 : x1 + 1] = False
    assert not changed[outside].any()  # labels stay inside their box
    interior = np.zeros_like(changed)
    interior[y0 + 13 : y1, x0 + 1 : x1] = True  # below the label strip
    assert not changed[interior].any()
    everything = _changed(render_output(registry, "det", boxes, context), before)
    for b in boxes:  # every box's top-left corner is drawn
        bx0, by0, _, _ = box_pixels(b, TILE)
        assert everything[by0, bx0]
    grey = render_output(registry, "det", [box], RenderContext(None, TILE))
    assert (grey[outside] == 128).all()


def test_palette_swatches_are_the_palette_colours(registry: Registry, scene) -> None:
    record, labels = scene
    for n in ("1", "3", "7"):
        colours = _through_text(registry, "color_palette", labels["color_palette"]["palettes"][n])
        picture = render_output(registry, "color_palette", colours, _context(record))
        width = TILE / len(colours)
        for i, colour in enumerate(colours):
            centre = int((i + 0.5) * width)
            assert (picture[:, centre] == colour).all()
        assert len({tuple(c) for c in picture[0]}) == len(set(colours))


def _sam_value(registry: Registry, record: dict[str, Any], labels: dict[str, dict[str, Any]]):
    """The scene's instances as query points with tokens ``(k,) * 16`` for instance ``k``, through the text."""
    from fourm_sam_instance.serializer import SamInstanceSerializer
    from fourm_sam_instance.tokenizing import mask_items

    raw = labels["sam_instance"]
    n = len(raw["boxes"])
    row = {**raw, "tokens": [[k] * 16 for k in range(n)]}
    value = _through_text(registry, "sam_instance", SamInstanceSerializer().from_store(row))
    return value, OracleTokenizer(mask_items(raw, 32))


def test_sam_masks_colour_their_true_instances(registry: Registry, scene) -> None:
    record, labels = scene
    value, oracle = _sam_value(registry, record, labels)
    drawn = sorted({inst.tokens[0] + 1 for p in value for inst in p.instances})
    assert len(drawn) >= 2
    truth = _tile(np.isin(labels["sam_instance"]["instances"], drawn))
    context = _context(record, sam_instance=oracle)
    changed = _changed(render_output(registry, "sam_instance", value, context), np.asarray(base_picture(context)))
    assert changed[truth].mean() > 0.85
    assert changed[~truth].mean() < 0.1
    assert changed[truth].mean() > 5 * changed[~truth].mean()


def test_sam_without_a_tokenizer_draws_boxes_only(registry: Registry, scene) -> None:
    record, labels = scene
    value, _ = _sam_value(registry, record, labels)
    context = _context(record)
    changed = _changed(render_output(registry, "sam_instance", value, context), np.asarray(base_picture(context)))
    truth = _tile(np.isin(labels["sam_instance"]["instances"], [i.tokens[0] + 1 for p in value for i in p.instances]))
    truth[:14] = False  # the note
    assert changed[truth].mean() < 0.4  # outlines and query dots only, no fill
    assert changed[:12, :40].any()  # "no mask tokenizer"


def test_sam_masks_decoded_by_the_real_tokenizer_stay_in_their_boxes(registry: Registry, scene) -> None:
    from fourm_sam_instance.decoders import instance_masks, unique_instances

    record, labels = scene
    value, _ = _sam_value(registry, record, labels)
    tokenizer = registry.tokenizer("sam_instance", "tiny")  # the real class, untrained: any 16 codes decode
    instances = unique_instances(value)
    masks = instance_masks(instances, tokenizer, IMAGE)
    assert len(masks) == len(instances)
    for mask, inst in zip(masks, instances):
        x0, y0, x1, y1 = inst.bbox
        assert mask.shape == (IMAGE, IMAGE) and mask.dtype == bool
        inside = np.zeros_like(mask)
        inside[y0 : y1 + 1, x0 : x1 + 1] = True
        assert not mask[~inside].any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        picture = render_output(registry, "sam_instance", value, _context(record, sam_instance=tokenizer))
    assert picture.shape == (TILE, TILE, 3)


def _people(registry: Registry, record: dict[str, Any], labels: dict[str, dict[str, Any]]):
    from fourm_human_poses.serializer import HumanPoseSerializer

    humans = labels["human_poses"]["humans"]
    row = {"humans": humans, "tokens": [[k] * 8 for k in range(len(humans))]}
    value = _through_text(registry, "human_poses", HumanPoseSerializer().from_store(row))
    return value, OracleTokenizer([np.asarray(h["body_pose"]) for h in humans])


def test_skeletons_land_on_the_true_joints(registry: Registry, scene) -> None:
    from fourm_human_poses.decoders import project_joints

    record, labels = scene
    value, oracle = _people(registry, record, labels)
    context = _context(record, human_poses=oracle)
    changed = _changed(render_output(registry, "human_poses", value, context), np.asarray(base_picture(context)))
    for k, (person, truth) in enumerate(zip(value, labels["human_poses"]["humans"])):
        joints = project_joints(person, oracle.items[k])  # fractions of the image
        true = np.asarray(truth["joints_2d"]) / IMAGE
        side = max(person.bbox[2] - person.bbox[0], person.bbox[3] - person.bbox[1])
        assert np.linalg.norm(joints - true, axis=1).mean() < 0.1 * side
        for x, y in np.clip((true * TILE).astype(int), 0, TILE - 1):
            assert changed[max(y - 3, 0) : y + 4, max(x - 3, 0) : x + 4].any()  # a bone within 3 px of each joint


def test_poses_without_a_tokenizer_draw_boxes_and_say_so(registry: Registry, scene) -> None:
    record, labels = scene
    value, _ = _people(registry, record, labels)
    context = _context(record)
    changed = _changed(render_output(registry, "human_poses", value, context), np.asarray(base_picture(context)))
    assert changed[:12, :40].any()  # "no pose tokenizer"
    outlines = np.zeros_like(changed)
    for person in value:
        x0, y0, x1, y1 = (v * TILE for v in person.bbox)
        outlines[int(y0) : int(np.ceil(y1)) + 1, int(x0) : int(np.ceil(x1)) + 1] = True
    outlines[:13] = True  # the note
    assert not changed[~outlines].any()
    real = registry.tokenizer("human_poses", "tiny")  # the real class, untrained: draws some skeleton
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        picture = render_output(registry, "human_poses", value, _context(record, human_poses=real))
    assert picture.shape == (TILE, TILE, 3)


def test_metadata_is_a_table_of_every_field(registry: Registry, scene) -> None:
    record, labels = scene
    members = ("metadata_image", "metadata_semantic", "metadata_geometric")
    value = _through_text(registry, "metadata", {m: labels[m]["values"] for m in members})
    assert set(value) == set(members)
    rows = record_rows(value)
    fields = [name.strip() for name, text in rows if text]
    assert sorted(fields) == sorted(f for m in members for f in value[m])
    pictures = [render_output(registry, m, value, _context(record)) for m in members]
    assert all((p == pictures[0]).all() for p in pictures)  # any member stands for the key
    ink = (pictures[0] < 128).any(-1)
    assert ink.mean() > 0.01 and ink[:, : TILE // 2].mean() > ink[:, TILE // 2 :].mean()  # left-aligned text
    one = render_output(registry, "metadata_image", value["metadata_image"], _context(record))  # a flat record
    assert one.shape == (TILE, TILE, 3) and not (one == pictures[0]).all()
    assert record_rows({"a": 3.0, "b": 0.123456}) == [("a", "3"), ("b", "0.1235")]
    assert table_picture([], 32).shape == (32, 32, 3)


def test_captions_are_wrapped_text_on_white(registry: Registry, scene) -> None:
    record, labels = scene
    caption = _through_text(registry, "caption", labels["caption"]["text"])
    picture = render_output(registry, "caption", caption, _context(record))
    ink = (picture < 128).any(-1)
    assert (picture[~ink] > 100).all() and ink.any()
    rows = np.nonzero(ink.any(1))[0]
    assert rows.max() - rows.min() > 12 or len(caption) < 20  # more than one line for a long caption
    longer = render_output(registry, "caption", caption + " " + caption * 8, _context(record))
    assert longer.shape == (TILE, TILE, 3)
