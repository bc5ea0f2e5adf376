"""What a modality's official ml-4m counterpart is: the published tokenizer, the input normalisation it expects, its
token layout and resolution range, and the text tokenizer of sequence modalities.

A plugin states this once, in :class:`OfficialAssets` on its spec; ``fourm tokenizer list --official`` shows it and
``tokenizers="official"`` resolves it. The normalisation is a closed vocabulary (:class:`Normalisation`) because it is
the one thing users get wrong with the official tokenizers (ml-4m issue 22: an ImageNet-normalised image fed to the
RGB tokenizer, which expects [-1, 1]); each name is implemented once, in
:mod:`fourm_core.tokenizers.official.normalisation`, and says what ml-4m applies before that tokenizer.

A bad value is a one-line :class:`OfficialAssetsError` naming the field, so the registry's problem line (which names
the plugin) is readable; inside a :class:`~fourm_core.spec.ModalitySpec` the same checks name the modality.
"""

from __future__ import annotations

import difflib
import re
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fourm_core.errors import UserError, one_line

__all__ = ["OFFICIAL_TEXT_TOKENIZER", "Normalisation", "OfficialAssets", "OfficialAssetsError"]

#: The WordPiece vocabulary every official sequence modality is written in (ml-4m
#: ``fourm/utils/tokenizer/trained/text_tokenizer_4m_wordpiece_30k.json``).
OFFICIAL_TEXT_TOKENIZER = "text_tokenizer_4m_wordpiece_30k.json"
#: how an :class:`OfficialAssetsError` message starts
ERROR_PREFIX = "official assets: "

# Hub repo ids: the rules of ``huggingface_hub.utils.validate_repo_id`` (as :func:`fourm_core.hub.is_repo_id`),
# restated so that validating a spec imports nothing but pydantic.
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[A-Za-z0-9][\w.\-]{0,95}$")


class Normalisation(str, Enum):
    """How ml-4m prepares a modality's data before its official tokenizer (or, for RGB pixels, before the model).

    Each value names one transform of ml-4m's ``fourm/data/modality_transforms.py`` as configured in
    ``MODALITY_TRANSFORMS_DIVAE`` / ``MODALITY_TRANSFORMS`` (``fourm/data/modality_info.py``) and the tokenizer
    configs (``cfgs/default/tokenization``)."""

    #: ``RGBTransform(imagenet_default_mean_and_std=False)``: [0, 1] pixels to [-1, 1] (mean = std = 0.5); RGB and
    #: edge maps (edges are read as RGB)
    MINUS_ONE_ONE = "minus_one_one"
    #: ``RGBTransform(imagenet_default_mean_and_std=True)``: ImageNet mean (0.485, 0.456, 0.406) and std
    #: (0.229, 0.224, 0.225); the model's RGB pixel input, and the RGB the feature teachers see
    IMAGENET = "imagenet"
    #: ``DepthTransform(standardize_depth=True)``: depth minus the mean of its 10%..90% band (by rank), divided by
    #: that band's ``sqrt(var + 1e-6)``
    ROBUST_DEPTH = "robust_depth"
    #: ``NormalTransform(standardize_surface_normals=False)``: normals stored as [0, 1] colours, mean = std = 0.5,
    #: i.e. the unit vectors in [-1, 1]
    NORMAL_HALF = "normal_half"
    #: ``SemsegTransform(shift_idx_by_one=True)``: COCO-panoptic class ids plus one, 255 (unlabelled) wrapping to 0
    SEMSEG_SHIFT_ONE = "semseg_shift_one"
    #: the teacher's features as it emits them (no statistics applied)
    FEATURES = "features"
    #: the values as they are (pose parameters, binary masks, text)
    NONE = "none"


class OfficialAssetsError(UserError, ValueError):
    """A plugin declared official assets that cannot be right (a malformed hub id, an unknown normalisation)."""


class OfficialAssets(BaseModel):
    """A modality's official ml-4m assets, declared by its plugin (``ModalitySpec.official``).

    ``hub_id`` is the published tokenizer (``EPFL-VILAB/4M_tokenizers_<name>``), None where ml-4m has none (RGB
    pixels, text, T5 embeddings); ``normalisation`` is what ml-4m applies to the data before that tokenizer (or before
    the model, for pixels); ``grid`` the tokens per side at the model's 224 px, ``tokens_per_item`` the tokens of one
    vector, pose or instance mask; ``resolution`` the (min, max) input side in pixels the tokenizer was trained on;
    ``text_tokenizer`` the WordPiece file of sequence modalities; ``teacher_input`` the normalisation of the RGB a
    feature teacher sees; ``encoder`` an outside model that makes the input (T5-XXL); ``file_form`` the converter
    between the stored value and ml-4m's file for it, where they differ (det's ``{"instances": [...]}`` JSON).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    hub_id: str | None = Field(None, description="hub repo id of the official tokenizer")
    normalisation: Normalisation = Field(..., description="what ml-4m applies before the tokenizer or the model")
    grid: int | None = Field(None, gt=0, description="tokens per side at 224 px (grid tokenizers)")
    tokens_per_item: int | None = Field(None, gt=0, description="tokens per vector, pose or instance mask")
    resolution: tuple[int, int] | None = Field(None, description="(min, max) input side in pixels")
    text_tokenizer: str | None = Field(None, description="the WordPiece file of a sequence modality")
    teacher_input: Normalisation | None = Field(None, description="normalisation of the RGB a feature teacher sees")
    encoder: str | None = Field(None, description="an outside model that produces the input (not a hub tokenizer)")
    max_length: int | None = Field(
        None,
        gt=0,
        le=512,
        description="ml-4m's sequence embedding max_length where it is below max_tokens (40 for a budget of 43): "
        "the official decoder gives every target position at or past it position 0, and so must fourm's",
    )
    file_form: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$",
        description="'package.module:attribute' of the object that converts this modality's stored value to the "
        "file ml-4m keeps for it and back (``to_official(value)`` / ``from_official(obj)``, JSON-able), where the "
        "two differ; used by ``fourm data export-ml4m`` / ``import-ml4m``",
    )
    notes: str = ""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:  # one line naming the field, not pydantic's multi-line report
            raise OfficialAssetsError(ERROR_PREFIX + describe(exc)) from None

    @field_validator("hub_id")
    @classmethod
    def _repo_id(cls, value: str | None) -> str | None:
        if value is not None and (not _REPO_ID.match(value) or "--" in value or ".." in value):
            raise ValueError(f"{value!r} is not a hub repo id (owner/name, e.g. EPFL-VILAB/4M_tokenizers_<name>)")
        return value

    @field_validator("normalisation", "teacher_input", mode="before")
    @classmethod
    def _known_normalisation(cls, value: Any) -> Any:
        if value is None or isinstance(value, Normalisation):
            return value
        known = [n.value for n in Normalisation]
        if value not in known:
            close = difflib.get_close_matches(str(value), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{value!r} is not a normalisation (known: {', '.join(known)}){hint}")
        return value

    @field_validator("resolution", mode="before")
    @classmethod
    def _resolution(cls, value: Any) -> Any:
        """Accept ``224``, ``"224-448"`` or ``(224, 448)``: the hub names spell ranges with a dash."""
        if isinstance(value, int) and not isinstance(value, bool):
            return (value, value)
        if isinstance(value, str):
            low, _, high = value.partition("-")
            try:
                return (int(low), int(high or low))
            except ValueError:
                raise ValueError(f"{value!r} is not a resolution ('224', '224-448' or (224, 448))") from None
        return value

    @field_validator("resolution")
    @classmethod
    def _ordered(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 0 < value[0] <= value[1]:
            raise ValueError(f"{value} is not a (min, max) range of positive pixel sizes")
        return value

    @field_validator("text_tokenizer")
    @classmethod
    def _json_file(cls, value: str | None) -> str | None:
        if value is not None and (not value.endswith(".json") or "/" in value):
            raise ValueError(f"{value!r} is not a tokenizer JSON file name (e.g. {OFFICIAL_TEXT_TOKENIZER})")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> OfficialAssets:
        if self.hub_id is not None:
            if (self.grid is None) == (self.tokens_per_item is None):
                raise ValueError("a tokenizer needs exactly one of grid (tokens per side) and tokens_per_item")
        elif self.grid is not None and self.tokens_per_item is not None:
            raise ValueError("give grid or tokens_per_item, not both")
        if self.teacher_input is not None and self.normalisation != Normalisation.FEATURES:
            raise ValueError("teacher_input is only for normalisation 'features'")
        return self

    # ------------------------------------------------------------------------------------------------ for tables
    @property
    def resolution_text(self) -> str:
        """``224-448``, ``224`` or ``-``: the range as the hub names spell it."""
        if self.resolution is None:
            return "-"
        low, high = self.resolution
        return str(low) if low == high else f"{low}-{high}"

    @property
    def layout_text(self) -> str:
        """``14x14``, ``16 per item`` or ``-``."""
        if self.grid is not None:
            return f"{self.grid}x{self.grid}"
        if self.tokens_per_item is not None:
            return f"{self.tokens_per_item} per item"
        return "-"


def describe(exc: ValidationError) -> str:
    """A pydantic error as one line per problem, joined by ``; ``: ``field 'hub_id': <reason>``."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        # a nested validation calls our __init__, whose own one-line error comes back wrapped: unwrap it
        message = str(err["msg"]).removeprefix("Value error, ").removeprefix(ERROR_PREFIX)
        parts.append(f"field {where!r}: {message}" if where else message)
    return one_line("; ".join(parts))
