"""What a user asks for, checked and turned into what :meth:`GenerationSampler.generate` takes.

The sampler wants, per model key, the exact content :class:`~fourm_core.data.pipeline.SampleBuilder` produces in
training (normalised pixels, token ids, sequence ids ending with ``[EOS]``). People have photos, depth maps and
sentences, and name modalities (``depth``) rather than model keys (``tok_depth@64``). This module bridges the two
and fails *before any compute* with an error that names the modality and the problem: an unknown name, a
target-only modality given as an input, an input-only modality asked as a target, a target without a trained
tokenizer, an image of the wrong shape. A mistake found after minutes of decoding, or as a shape error deep in the
model, costs far more than one found here.

Dispatch is on the spec's ``kind`` only (pixels / image tokens / global tokens / sequence / sequence embedding);
nothing here names a modality.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from fourm_core.data.masking import EOS_ID
from fourm_core.data.pipeline import IMAGENET_MEAN, IMAGENET_STD
from fourm_core.errors import UserError, read_json
from fourm_core.serialization import FromStore, SerializationError
from fourm_core.spec import PRESETS, MaskingUnit, ModalityKind

if TYPE_CHECKING:
    from fourm_core.inference.pipeline import Pipeline

__all__ = [
    "GenerationInputs",
    "GenerationRequestError",
    "IMAGE_SUFFIXES",
    "MAX_ENSEMBLE",
    "Requested",
    "build_inputs",
    "check_options",
    "infer_preset",
    "load_value",
    "resolve",
    "target_names",
    "trained_tokenizer",
    "validate_targets",
]

#: File suffixes read as pictures (through the photo ingester, so EXIF orientation and ICC profiles are honoured).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
_TOKEN_KINDS = (ModalityKind.IMAGE_TOKENS, ModalityKind.GLOBAL_TOKENS)
#: kinds a model can predict (the others are inputs only)
_PREDICTABLE = (*_TOKEN_KINDS, ModalityKind.SEQUENCE)
#: most generations fused per sample: every one is a full chain held in memory at once (1000 would exhaust it),
#: and fusing more than a few dozen changes nothing visible
MAX_ENSEMBLE = 64


class GenerationRequestError(UserError, ValueError):
    """An input or target that cannot be generated from or to; raised before any model compute, and the message
    starts with the modality it is about."""


@dataclass(frozen=True)
class Requested:
    """One modality as the user named it, with what the model calls it."""

    name: str  #: the modality (plugin) name, or the model key when the user gave a key
    key: str  #: the model key in the preset (``tok_depth@64``)
    kind: ModalityKind
    members: tuple[str, ...]  #: modality names behind the key (several for a group such as the metadata keys)

    @property
    def modality(self) -> str:
        """The modality whose tokenizer and serializer stand for the key (the named one, or the first member)."""
        return self.name if self.name in self.members else self.members[0]


class GenerationInputs(dict[str, Any]):
    """``{model key: content}`` ready for :meth:`GenerationSampler.generate`, plus what the inputs looked like
    (so a result can draw them next to the outputs without loading the files twice).

    ``pictures``: modality name -> (H, W, 3) uint8 as the model saw it (cropped and resized); ``texts``: modality
    name -> the sequence text that was encoded; ``requested``: model key -> :class:`Requested`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pictures: dict[str, np.ndarray] = {}
        self.texts: dict[str, str] = {}
        self.requested: dict[str, Requested] = {}


# ------------------------------------------------------------------------------------------------ names and presets


def resolve(registry: Any, preset: str, name: str) -> Requested:
    """The model key behind a modality name (or a model key given as is); unknown names list what exists."""
    keys = registry.model_keys(preset)
    if name in registry:
        modality = registry.get(name)
        key = modality.model_key(preset)
        return Requested(name, key, modality.spec.kind, tuple(m.name for m in keys[key]))
    if name in keys:
        return Requested(name, name, keys[name][0].spec.kind, tuple(m.name for m in keys[name]))
    import difflib

    close = difflib.get_close_matches(name, [*registry.names(), *keys], n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise GenerationRequestError(f"{name}: unknown modality (known: {', '.join(registry.names())}){hint}")


def infer_preset(registry: Any, keys: Mapping[str, Any], preset: str | None = None) -> str:
    """The preset whose model keys cover the model's keys. A checkpoint's keys (``tok_depth@64``) say which
    preset it was trained in, so users need not repeat it; an explicit ``preset`` that contradicts them is an
    error here rather than an unknown-key error later."""
    fits = [p for p in PRESETS if set(keys) <= set(registry.model_keys(p))]
    if preset is not None:
        if fits and preset not in fits:
            raise GenerationRequestError(f"preset {preset!r}: the model's keys belong to preset {fits[0]!r}")
        return preset
    if fits:
        return fits[0] if len(fits) == 1 or "tiny" not in fits else "tiny"
    unknown = sorted(set(keys) - set(registry.model_keys(PRESETS[-1])))
    raise GenerationRequestError(
        f"cannot tell the model's preset: keys {unknown[:5]} belong to no installed plugin; pass --preset"
    )


# ------------------------------------------------------------------------------------------------ loading values


def load_value(value: Any, what: str, image_size: int | None = None) -> Any:
    """A value given on the command line or from Python: file paths are read by suffix (``.npy``, ``.json``,
    ``.txt``, pictures); anything else is returned as it is. ``what`` names the modality in errors.

    Pictures are read by the photo ingester (:func:`~fourm_core.sources.image_folder.load_photo`), exactly as
    ``fourm data ingest`` reads the photos a model is trained on: EXIF orientation applied, the pixel limit
    enforced, the centre square resized to ``image_size``, and a non-image or truncated file refused by name.
    Only pixel inputs (``image_size`` given) are read from pictures: a PNG of a depth map or a label map is not
    the stored form its tokenizer takes."""
    if isinstance(value, Path) or (isinstance(value, str) and _looks_like_file(value)):
        path = Path(value)
        if not path.is_file():
            raise GenerationRequestError(f"{what}: no file {path}")
        suffix = path.suffix.lower()
        if suffix == ".npy":
            try:
                return np.load(path, allow_pickle=False)
            except (ValueError, OSError) as exc:
                raise GenerationRequestError(f"{what}: {path} is not a readable .npy array ({exc})") from None
        if suffix == ".json":
            return read_json(path, f"{what} value (JSON)")
        if suffix == ".txt":
            return path.read_text().strip()
        if suffix in IMAGE_SUFFIXES:
            return _read_picture(path, what, image_size)
        raise GenerationRequestError(f"{what}: cannot read {path} (use a picture, .npy, .json or .txt)")
    return value


def _read_picture(path: Path, what: str, image_size: int | None) -> np.ndarray:
    from fourm_core.sources.image_folder import IngestError, load_photo

    if image_size is None:
        raise GenerationRequestError(
            f"{what}: {path} is a picture, but {what} is not a pixel input; give its stored form as a .npy array"
        )
    try:
        return load_photo(path, image_size).rgb
    except IngestError as exc:
        raise GenerationRequestError(f"{what}: {exc}") from None


def _looks_like_file(text: str) -> bool:
    """A string is a path when such a file exists, or when it ends with a known suffix and has no spaces (so a
    missing photo is reported as missing instead of being encoded as text)."""
    if "\n" in text or len(text) > 4096:
        return False
    suffixes = (*IMAGE_SUFFIXES, ".npy", ".json", ".txt")
    return Path(text).is_file() or (" " not in text and text.lower().endswith(suffixes))


# ------------------------------------------------------------------------------------------------ inputs


def build_inputs(pipe: Pipeline, raw: Mapping[str, Any]) -> GenerationInputs:
    """Per-key contents for :meth:`GenerationSampler.generate` from user values, keyed by modality name.

    * pixels: a picture file or an (H, W, 3) uint8 array; centre-cropped to a square, resized to the preset's image
      size and ImageNet-normalised exactly as :class:`~fourm_core.data.pipeline.SampleBuilder` does in training;
    * image / global tokens: a stored-form array (or ``.npy`` file) encoded by the modality's trained tokenizer;
    * sequences: a string is taken as the sequence text itself (a caption, or a det string in the official
      format) and checked by the key's serializer; any other value is serialised by it; the text vocabulary
      encodes the text and ``[EOS]`` ends it (chunk-masked keys become chunk lists, as in training);
    * sequence embeddings: (rows, width) float arrays.

    When the pipeline has a network, keys it does not take as inputs are refused too. Every error is raised before
    anything is encoded by a network and names the modality.
    """
    registry, preset, model = pipe.registry, pipe.preset, pipe.network
    out = GenerationInputs()
    requested: list[tuple[Requested, Any]] = []
    seen: set[str] = set()
    for name, value in raw.items():
        req = resolve(registry, preset, name)
        spec = registry.get(req.modality).spec
        if spec.target_only:
            raise GenerationRequestError(f"{name}: a target-only modality cannot be an input")
        if model is not None:
            info = pipe.keys.get(req.key)
            if info is None:
                raise GenerationRequestError(f"{name}: the model has no key {req.key!r}")
            if not info.input or req.key not in getattr(model, "encoder_embeddings", {req.key: 0}):
                raise GenerationRequestError(f"{name}: the model takes {req.key!r} as a target only")
        if req.key in seen and req.kind != ModalityKind.SEQUENCE:  # group members may share a sequence key
            raise GenerationRequestError(f"{name}: {req.key!r} is given twice")
        seen.add(req.key)
        size = int(spec.layout(preset).image_size) if req.kind == ModalityKind.PIXELS else None
        requested.append((req, load_value(value, name, size)))
    # cheap checks for every input first, so a bad second input fails before the first one is tokenised
    for req, value in requested:
        _check_finite(req.name, value)
        if req.kind == ModalityKind.PIXELS:
            _check_image(req.name, value)
        elif req.kind in _TOKEN_KINDS:
            trained_tokenizer(pipe, req)
        elif req.kind == ModalityKind.SEQUENCE and pipe.vocabulary is None:
            raise GenerationRequestError(f"{req.name}: a sequence input needs the text vocabulary (--vocab)")
        elif req.kind == ModalityKind.SEQUENCE and _needs_item_tokens(pipe, req, value):
            trained_tokenizer(pipe, req)
    groups: dict[str, dict[str, Any]] = {}
    for req, value in requested:
        spec = registry.get(req.modality).spec
        if req.kind == ModalityKind.PIXELS:
            picture = _square(value, int(spec.layout(preset).image_size))
            out[req.key] = normalise_pixels(picture)
            out.pictures[req.name] = picture
        elif req.kind in _TOKEN_KINDS:
            out[req.key], shown = _encode_tokens(pipe, req, value)
            if shown is not None:
                out.pictures[req.name] = shown
        elif req.kind == ModalityKind.SEQUENCE_EMBEDDING:
            rows = np.asarray(value, dtype=np.float32)
            if rows.ndim != 2:
                raise GenerationRequestError(f"{req.name}: expected (rows, width) embeddings, got {rows.shape}")
            out[req.key] = torch.from_numpy(rows[: spec.layout(preset).max_tokens].copy())
        else:
            groups.setdefault(req.key, {})[req.name] = (req, value)
    for key, members in groups.items():
        members = {name: (req, _with_item_tokens(pipe, req, value)) for name, (req, value) in members.items()}
        content, text = _sequence(pipe, key, members)
        out[key] = content
        out.texts[", ".join(members)] = text
    for req, _ in requested:
        out.requested[req.key] = req
    return out


def normalise_pixels(picture: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 with ml-4m's ImageNet mean and std (``SampleBuilder._pixels``)."""
    x = torch.from_numpy(np.array(picture, copy=True)).to(torch.float32).permute(2, 0, 1) / 255.0
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    return (x - mean) / std


def _check_image(name: str, value: Any) -> None:
    if not isinstance(value, (np.ndarray, torch.Tensor)):
        raise GenerationRequestError(
            f"{name}: expected a picture file or an (H, W, 3) uint8 array, got {type(value).__name__}"
        )
    a = np.asarray(value)
    if a.ndim != 3 or a.shape[2] != 3 or min(a.shape[:2]) < 1:
        raise GenerationRequestError(f"{name}: expected an (H, W, 3) image, got shape {tuple(a.shape)}")
    if a.dtype != np.uint8:
        raise GenerationRequestError(f"{name}: expected uint8 pixels (0..255), got {a.dtype}")


def _check_finite(name: str, value: Any) -> None:
    """A float array with NaN or infinite values would be tokenised into garbage codes without a word (a depth map
    saved with holes as NaN, for one): refuse it, naming the input."""
    if not isinstance(value, (np.ndarray, torch.Tensor)):
        return
    a = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
    if np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.complexfloating):
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise GenerationRequestError(
                f"{name}: the array has {bad} NaN or infinite values of {a.size}; expected finite numbers "
                "(fill the holes first)"
            )


def _square(value: Any, size: int) -> np.ndarray:
    """Centre square (as the photo ingester crops), resized like ``SampleBuilder._pixels`` (bilinear with
    antialiasing) and rounded back to uint8 so the grid shows what the model sees."""
    a = np.asarray(value)
    h, w = a.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    a = a[top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(a)
    x = torch.from_numpy(np.array(a, copy=True)).to(torch.float32).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    return x.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def trained_tokenizer(pipe: Pipeline, req: Requested) -> Any:
    """The trained tokenizer of a token key, or an error saying how to get one."""
    modality, directory = req.modality, pipe.tokenizers
    if directory is None:
        raise GenerationRequestError(f"{req.name}: needs its trained tokenizer; pass the tokenizer directory")
    try:
        tokenizer = pipe.tokenizer(modality)
    except Exception as exc:  # PluginError / TokenizerError: missing or unreadable weights
        if directory == "official":  # the hub's or the registry's own line says which repo and how to get it
            raise GenerationRequestError(f"{req.name}: {exc}") from None
        cause = exc.__cause__ or exc
        raise GenerationRequestError(
            f"{req.name}: no trained tokenizer in {directory} ({cause}); run `fourm tokenizer train {modality}`"
        ) from None
    if not getattr(tokenizer, "trained", False):
        raise GenerationRequestError(f"{req.name}: the tokenizer in {directory} is not trained")
    return tokenizer


def _encode_tokens(pipe: Pipeline, req: Requested, value: Any) -> tuple[torch.Tensor, np.ndarray | None]:
    """Token ids of a stored-form array, and its picture (by the tokenizer's transform) for the grid."""
    from fourm_core.viz.pictures import picture

    tokenizer = trained_tokenizer(pipe, req)
    array = np.asarray(value)
    try:
        ids = tokenizer.encode_raw([array])
    except Exception as exc:  # the tokenizer names the expected shape
        raise GenerationRequestError(f"{req.name}: cannot tokenise the given array: {exc}") from None
    transform = getattr(getattr(tokenizer, "config", None), "transform", None)
    return ids[0].long(), picture(transform, array) if transform else None


def _needs_item_tokens(pipe: Pipeline, req: Requested, value: Any) -> bool:
    """A stored-form value of an item-tokenised sequence (people, instances) without its tokens: the raw row a
    store holds (``{"humans": [...]}``), which the modality's item tokenizer must encode first."""
    serializer = pipe.registry.key_serializer(req.key, pipe.preset)
    return isinstance(value, Mapping) and "tokens" not in value and isinstance(serializer, FromStore)


def _with_item_tokens(pipe: Pipeline, req: Requested, value: Any) -> Any:
    """The value the serializer takes: a raw row of an item-tokenised sequence becomes its items (with tokens
    from the modality's trained item tokenizer, exactly as ``fourm data tokenize`` stores them); anything else
    is returned as given."""
    if not _needs_item_tokens(pipe, req, value):
        return value
    from fourm_core.tokenizers.training import item_function

    tokenizer = trained_tokenizer(pipe, req)
    items_of = item_function(tokenizer.config)
    if items_of is None:
        raise GenerationRequestError(f"{req.name}: the tokenizer encodes no items; give the value with its tokens")
    try:
        items = [np.asarray(x) for x in items_of(dict(value), tokenizer.config.input_size)]
        tokens = tokenizer.encode_raw(items).numpy() if items else np.zeros((0, tokenizer.n_tokens), np.int64)
        return pipe.registry.key_serializer(req.key, pipe.preset).from_store({**value, "tokens": tokens})
    except GenerationRequestError:
        raise
    except Exception as exc:  # the item function or tokenizer names what is wrong with the value
        raise GenerationRequestError(f"{req.name}: cannot tokenise the given items: {exc}") from None


def _sequence(
    pipe: Pipeline, key: str, members: Mapping[str, tuple[Requested, Any]]
) -> tuple[torch.Tensor | list[list[int]], str]:
    """Text and ids of one sequence key (several group members merge into one value, as stored)."""
    registry, preset, vocabulary = pipe.registry, pipe.preset, pipe.vocabulary
    serializer = registry.key_serializer(key, preset)
    names = ", ".join(members)
    first, value = next(iter(members.values()))
    grouped = len(first.members) > 1
    try:
        if grouped:  # the group's codec takes {member: value}; the model key itself takes that mapping whole
            merged: dict[str, Any] = {}
            for req, member_value in members.values():
                if req.name in req.members and not isinstance(member_value, str):
                    merged[req.name] = member_value
                elif req.name not in req.members and isinstance(member_value, Mapping):
                    merged.update(member_value)
                else:
                    raise GenerationRequestError(
                        f"{req.name}: give a value (a .json file or a mapping), not text, for the group key {key!r}"
                    )
            text = serializer.serialize(merged, None)
        elif isinstance(value, str):
            text = " ".join(value.split())
            serializer.parse(text)  # the text must already be in the key's format
        else:
            text = serializer.serialize(value, None)
    except (SerializationError, TypeError, ValueError, KeyError, AttributeError) as exc:
        if isinstance(exc, GenerationRequestError):
            raise
        raise GenerationRequestError(f"{names}: not a valid value for {key!r}: {exc}") from None
    if not text.strip():
        raise GenerationRequestError(f"{names}: the value serialises to an empty sequence")
    spec = registry.get(first.modality).spec
    max_tokens = spec.layout(preset).max_tokens
    if spec.masking == MaskingUnit.CHUNK:
        chunks = [vocabulary.encode(c) for c in registry.masking_chunks(first.modality, text)]
        return [c for c in chunks if c] + [[EOS_ID]], text
    ids = (list(vocabulary.encode(text)) + [EOS_ID])[:max_tokens]
    return torch.tensor(ids, dtype=torch.long), text


# ------------------------------------------------------------------------------------------------ targets


def target_names(targets: str | Sequence[str]) -> list[str]:
    """The target names of a request: a list of names, or one string of comma-separated names (``"depth"``,
    ``"depth,caption"``, as ``--targets`` takes them). A bare string is not iterated letter by letter."""
    if isinstance(targets, str):
        return [t.strip() for t in targets.split(",") if t.strip()]
    if not isinstance(targets, Sequence) or any(not isinstance(t, str) for t in targets):
        raise GenerationRequestError(
            f"targets: expected a list of modality names or one comma-separated string, got {targets!r}"
        )
    return list(targets)


def check_options(ensemble: int = 1, steps: int = 8, temperature: float = 0.5, top_p: float | None = None) -> None:
    """The sampling options of a request, before any compute: at least one and at most :data:`MAX_ENSEMBLE`
    generations, at least one step, a temperature >= 0 and a nucleus threshold in (0, 1]."""
    if not isinstance(ensemble, int) or not 1 <= ensemble <= MAX_ENSEMBLE:
        raise GenerationRequestError(
            f"ensemble {ensemble}: fuse between 1 and {MAX_ENSEMBLE} generations (each one is held in memory)"
        )
    if not isinstance(steps, int) or steps < 1:
        raise GenerationRequestError(f"steps {steps}: at least one decoding step per target")
    if not temperature >= 0:  # NaN too
        raise GenerationRequestError(f"temperature {temperature}: expected a number >= 0 (0: the most likely token)")
    if top_p is not None and not 0 < top_p <= 1:
        raise GenerationRequestError(f"top_p {top_p}: expected a probability in (0, 1]")


def validate_targets(pipe: Pipeline, targets: str | Sequence[str], inputs: Sequence[str] = ()) -> list[Requested]:
    """Resolve and check every target before any compute: a known modality the model predicts, not an input,
    asked once, with a trained tokenizer for image and global tokens (the picture cannot be drawn otherwise),
    and a text vocabulary of the model's size for sequences. ``inputs``: model keys already given; ``targets``:
    names, or one comma-separated string (:func:`target_names`)."""
    targets = target_names(targets)
    if not targets:
        raise GenerationRequestError("no targets: name at least one modality to generate")
    model, vocabulary = pipe.network, pipe.vocabulary
    seen: dict[str, str] = {}
    out = []
    for name in targets:
        req = pipe.resolve(name)
        spec = pipe.registry.get(req.modality).spec
        info = pipe.keys.get(req.key)
        if spec.input_only or req.kind not in _PREDICTABLE:
            raise GenerationRequestError(f"{name}: an input-only modality cannot be a target")
        if info is None:
            raise GenerationRequestError(f"{name}: the model has no key {req.key!r} (trained without it)")
        if not info.target or req.key not in getattr(model, "decoder_embeddings", {req.key: 0}):
            raise GenerationRequestError(f"{name}: the model takes {req.key!r} as an input only")
        if req.key in seen:
            raise GenerationRequestError(f"{name}: {req.key!r} is already a target (as {seen[req.key]!r})")
        if req.key in inputs:
            raise GenerationRequestError(f"{name}: {req.key!r} is given as an input")
        if req.kind in _TOKEN_KINDS:
            trained_tokenizer(pipe, req)
        elif vocabulary is not None and info.vocab_size and vocabulary.size > info.vocab_size:
            raise GenerationRequestError(
                f"{name}: the text vocabulary has {vocabulary.size} ids, the model "
                f"{info.vocab_size}: not the vocabulary it was trained with"
            )
        seen[req.key] = name
        out.append(req)
    return out
