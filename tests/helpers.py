"""Helpers shared by the core tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from fourm_core.registry import ENTRY_POINT_GROUP, Registry

#: The example out-of-tree plugin installed by `make install`; tests about the 21 built-ins block it.
EXAMPLE_PLUGIN = "albedo"
#: Labeling options of every test that labels a store: teachers whose weights are not cached run random-initialised
#: (opt-in since issue 16; without it such modalities are skipped), and nothing is downloaded.
RANDOM_TEACHERS = {"allow_random_teachers": True, "teacher_downloads": False}

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


def cli_options(**options: object) -> list[str]:
    """``["--name", "value", ...]`` for the keywords in order (``_`` in a name written ``-``): the options of a command
    line a test runs, one keyword each, so that a test reads as the values it is about."""
    return [part for name, value in options.items() for part in (f"--{name.replace('_', '-')}", str(value))]


def registry_with(*extra: EntryPoint, disabled: set[str] | None = None, strict: bool = False) -> Registry:
    """The installed plugins plus ``extra`` distributions (the example plugin blocked unless ``disabled`` says)."""
    blocked = disabled if disabled is not None else {EXAMPLE_PLUGIN}
    return Registry([*installed_entry_points(), *extra], disabled=blocked, strict=strict)


class BlobSource:
    """A tiny deterministic source (coloured rectangles on a ground) with the synthetic world's field names, so
    store, labeling and resume tests need no renderer. Picklable: worker processes rebuild records from the index."""

    name = "blobs"

    def __init__(self, n: int, size: int = 32) -> None:
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def arrays(self):
        from fourm_core.spec import ArraySpec

        return (
            ArraySpec(name="rgb", dtype="uint8", shape=("H", "W", 3)),
            ArraySpec(name="depth", dtype="float32", shape=("H", "W")),
            ArraySpec(name="normal", dtype="float16", shape=("H", "W", 3)),
            ArraySpec(name="semantic", dtype="int16", shape=("H", "W")),
            ArraySpec(name="instances", dtype="int32", shape=("H", "W")),
            ArraySpec(name="boxes", dtype="json", ragged=True),
            ArraySpec(name="humans", dtype="json", ragged=True),
            ArraySpec(name="caption", dtype="text", ragged=True),
            ArraySpec(name="original_size", dtype="int32", shape=(2,)),
        )

    def record(self, index: int) -> dict:
        import numpy as np

        if index == 7:
            raise ValueError(f"sample {index}: corrupt on purpose")
        rng = np.random.default_rng(index)
        s = self.size
        rgb = np.zeros((s, s, 3), np.uint8)
        rgb[s // 2 :] = (40, 140, 40)  # grass
        rgb[: s // 2] = (120, 170, 230)  # sky
        rows = np.arange(s, dtype=np.float32)[:, None]
        depth = np.where(rows >= s // 2, 20.0 / np.maximum(rows - s // 2 + 1, 1), 0.0)
        depth = np.broadcast_to(depth, (s, s)).astype(np.float32).copy()
        normal = np.zeros((s, s, 3), np.float16)
        normal[s // 2 :, :, 1] = -1
        semantic = np.where(np.arange(s)[:, None] >= s // 2, 126, 120).astype(np.int16) * np.ones((1, s), np.int16)
        instances = np.zeros((s, s), np.int32)
        boxes = []
        for k in range(1 + index % 3):
            x0, y0 = rng.integers(0, s - 8, 2)
            w, h = rng.integers(3, 8, 2)
            colour = rng.integers(0, 255, 3)
            rgb[y0 : y0 + h, x0 : x0 + w] = colour
            depth[y0 : y0 + h, x0 : x0 + w] = 3.0 + k
            normal[y0 : y0 + h, x0 : x0 + w] = (0, 0, -1)
            semantic[y0 : y0 + h, x0 : x0 + w] = 42  # cup (panoptic 41) + 1
            instances[y0 : y0 + h, x0 : x0 + w] = k + 1
        for k in range(1, instances.max() + 1):
            ys, xs = np.nonzero(instances == k)
            if len(xs):
                boxes.append(
                    {
                        "xmin": xs.min() / s,
                        "ymin": ys.min() / s,
                        "xmax": (xs.max() + 1) / s,
                        "ymax": (ys.max() + 1) / s,
                        "label": "cup",
                        "score": 1.0,
                        "instance": k,
                    }
                )
        return {
            "rgb": rgb,
            "depth": depth,
            "normal": normal,
            "semantic": semantic,
            "instances": instances,
            "boxes": boxes,
            "humans": [],
            "caption": f"{len(boxes)} cups on the grass.",
            "original_size": np.array([s, s], np.int32),
        }

    def describe(self) -> dict:
        return {"n": self.n, "size": self.size}


def small_world(
    root: Path,
    registry: Registry,
    labelled: list[str],
    tokenised: Sequence[str] = (),
    steps: int = 2,
    crops: int | None = None,
    scenes: int = 40,
) -> dict[str, Path]:
    """A labelled synthetic store of ``scenes`` scenes at 64 px (tiny preset), a tokenizer shrunk to dim 32 and fitted
    for ``steps`` steps per ``tokenised`` modality, the store pre-tokenised with ``crops`` crops when given, and a
    vocabulary trained on its captions: ``{"root", "store", "toks", "vocab"}``. The tokenizers only need to exist and
    round-trip shapes: what these worlds test is plumbing, not quality."""
    from fourm_core.labeling.runner import label_store
    from fourm_core.sources.adapters import SyntheticSource
    from fourm_core.storage.source_writer import create_source_store, write_source
    from fourm_core.storage.store import AlignedStore
    from fourm_core.tokenizers import Tokenizer, TrainConfig, config_from_spec
    from fourm_core.tokenizers.pretokenize import tokenize_store
    from fourm_core.tokenizers.training import collect, fit
    from fourm_core.vocab import build_text_vocabulary

    path = root / "w.zarr"
    source = SyntheticSource(scenes, 64, 5)
    write_source(create_source_store(path, source, 64, "tiny", 16), source)
    label_store(path, registry=registry, only=labelled, options=RANDOM_TEACHERS)
    store = AlignedStore.open(path, mode="r")
    train = TrainConfig(steps=steps, max_seconds=None, batch_size=8)
    for name in tokenised:
        config = config_from_spec(registry.get(name).spec, "tiny").model_copy(
            update={"dim": 32, "enc_depth": 1, "dec_depth": 1, "heads": 2, "diffusion": None}
        )
        tok = Tokenizer(config)
        split = collect(store, tok.config, registry, 0.2)
        fit(tok, split.train + split.held_out, train)
        tok.save_pretrained(root / "toks" / tok.name)
    if crops is not None:
        tokenize_store(path, root / "toks", registry, only=list(tokenised), crops=crops, seed=0)
    texts = [row["text"] for b in range(store.n_blocks) for row in store.read_block("caption/raw", b) if row]
    words = sorted({w for m in registry.modalities() for w in m.spec.vocab_words})
    vocab = build_text_vocabulary(texts, words).save(root / "text_tokenizer.json")
    return {"root": root, "store": path, "toks": root / "toks", "vocab": vocab}


def random_model_api(registry: Registry, built: dict[str, Path], modalities: list[str], preset: str = "tiny") -> object:
    """A random-init dim-32 network over ``modalities`` wrapped as :class:`~.inference.api.FourM` with the small
    world's vocabulary and tokenizers (what evaluation tests score: mechanics, not quality)."""
    import torch

    from fourm_core.inference.api import FourM as Api
    from fourm_core.keys import KeyTable
    from fourm_core.model.network import FourMNetwork, fourm_config
    from fourm_core.vocab import TextVocabulary

    vocab = TextVocabulary.load(built["vocab"])
    keys = {registry.get(name).model_key(preset) for name in modalities}
    info = KeyTable.from_registry(registry, preset, text_vocab_size=vocab.size, keys=keys)
    torch.manual_seed(0)
    network = FourMNetwork(fourm_config(info, "tiny", dim=32, encoder_depth=1, decoder_depth=1, num_heads=2))
    return Api(network, registry, preset, vocab, built["toks"])


def random_sequence_pipeline(registry: Registry, vocab: object, modalities: Sequence[str]) -> object:
    """A random-init dim-32 :class:`~fourm_core.inference.pipeline.Pipeline` over ``modalities`` (tiny preset)
    with ``vocab`` and no tokenizers: what a barely trained model writes for rgb -> sequence targets."""
    import torch

    from fourm_core.inference.pipeline import Pipeline
    from fourm_core.keys import KeyTable
    from fourm_core.model.network import FourMNetwork, fourm_config

    keys = {registry.get(name).model_key("tiny") for name in modalities}
    info = KeyTable.from_registry(registry, "tiny", text_vocab_size=vocab.size, keys=keys)  # type: ignore[attr-defined]
    torch.manual_seed(0)
    network = FourMNetwork(fourm_config(info, "tiny", dim=32, encoder_depth=1, decoder_depth=1, num_heads=2))
    return Pipeline.create(network.eval(), registry, "tiny", vocab)


def tiny_quality_config(world: dict[str, Path], out_dir: Path, **fields: object) -> object:
    """A :class:`~fourm_core.apps.bench.quality.QualityBenchConfig` over the small world with a dim-32 model trained
    2 steps per row (what quality-bench tests run), ``fields`` (tasks, rows, evaluation, ...) added."""
    from fourm_core.apps.bench.quality import QualityBenchConfig

    return QualityBenchConfig.model_validate(
        {
            "store": str(world["store"]),
            "tokenizers": str(world["toks"]),
            "vocabulary": str(world["vocab"]),
            "out_dir": str(out_dir),
            "val_samples": 6,
            "train": {
                "input_tokens": 32,
                "target_tokens": 32,
                "model": {
                    "size": "tiny",
                    "preset": "tiny",
                    "overrides": {"dim": 32, "encoder_depth": 1, "decoder_depth": 1, "num_heads": 2},
                },
                "schedule": {"steps": 2},
                "engine": {"micro_batch_size": 4, "threads": 1, "peak_gflops": 10.0},
            },
            **fields,
        }
    )
