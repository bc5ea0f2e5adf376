"""The network's configuration: sizes, recipe flags and the key table, validated, saved and read back unchanged.

:class:`FourMConfig` is what :class:`~fourm_core.model.network.FourMNetwork` is built from and keeps as ``.config``;
``save_pretrained`` writes it as ``config.json`` and ``from_pretrained`` reads it back equal. Unknown fields are
errors naming them (a typo such as ``num_head`` fails instead of being ignored).

The official ml-4m ``config.json`` has no key table: its ``FM`` wrapper builds one from ``domains_in`` /
``domains_out`` and ``image_size`` / ``patch_size``. Conversion to and from that layout happens here only
(:meth:`FourMConfig.to_official`, :meth:`FourMConfig.from_official`); :func:`read_config` tells the layouts apart.

This module imports no torch, so the CLI and the checkpoint tools can read configs cheaply.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, model_validator

from fourm_core.errors import read_json
from fourm_core.keys import DEFAULT_TEXT_VOCAB, KeyInfo, KeyTable, KeyTableError

__all__ = [
    "CONFIG_NAME",
    "OFFICIAL_FIELDS",
    "RECIPES",
    "SIZES",
    "FourMConfig",
    "fourm_config",
    "is_official_config",
    "official_key_table",
    "read_config",
]

CONFIG_NAME = "config.json"
#: Official size registry (``@register_model`` in fm.py): width, encoder/decoder depth, heads.
SIZES: dict[str, dict[str, int]] = {
    "tiny": {"dim": 384, "encoder_depth": 6, "decoder_depth": 6, "num_heads": 6},
    "small": {"dim": 512, "encoder_depth": 8, "decoder_depth": 8, "num_heads": 8},
    "B": {"dim": 768, "encoder_depth": 12, "decoder_depth": 12, "num_heads": 12},
    "L": {"dim": 1024, "encoder_depth": 24, "decoder_depth": 24, "num_heads": 16},
    "XL": {"dim": 2048, "encoder_depth": 24, "decoder_depth": 24, "num_heads": 32},
}
#: Official recipes: ``*_swiglu_nobias`` (the 4M-21 models) and ``*_gelu``.
RECIPES: dict[str, dict[str, Any]] = {
    "swiglu_nobias": {
        "qkv_bias": False,
        "proj_bias": False,
        "mlp_bias": False,
        "norm_bias": False,
        "act_layer": "SiLU",
        "gated_mlp": True,
    },
    "gelu": {
        "qkv_bias": True,
        "proj_bias": True,
        "mlp_bias": True,
        "norm_bias": True,
        "act_layer": "GELU",
        "gated_mlp": False,
    },
}
#: Activations ml-4m's ``FM`` resolves with ``getattr(torch.nn, name)`` that a 4M MLP can use.
ACTIVATIONS = ("GELU", "SiLU", "ReLU", "Tanh", "Sigmoid", "Mish", "ELU", "LeakyReLU")
#: Fields that only fourm has: the official ``FM`` always shuffles the decoder modalities and unties the heads,
#: so :meth:`FourMConfig.to_official` refuses other values instead of dropping them.
_FOURM_ONLY = {"shuffle_decoder_modalities": True, "share_embedding": False}


def _table(value: Any) -> KeyTable:
    return KeyTable.coerce(value)


#: A :class:`KeyTable` as a pydantic field: read from a table, KeyInfos or their JSON list; written as that list.
KeyTableField = Annotated[KeyTable, PlainValidator(_table), PlainSerializer(lambda t: t.to_json(), return_type=list)]


class FourMConfig(BaseModel):
    """Sizes, recipe flags, the domains and the key table of one network (field names follow ml-4m's ``FourM``).

    ``domains_in`` / ``domains_out`` order the encoder / decoder embeddings (and so the state dict); every domain
    is a key of ``keys``, the inputs able to be inputs, the outputs able to be targets."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    domains_in: list[str]
    domains_out: list[str]
    keys: KeyTableField
    dim: int = Field(768, gt=0)
    encoder_depth: int = Field(12, ge=0)
    decoder_depth: int = Field(12, ge=0)
    num_heads: int = Field(12, gt=0)
    mlp_ratio: float = Field(4.0, gt=0)
    qkv_bias: bool = True
    proj_bias: bool = True
    mlp_bias: bool = True
    norm_bias: bool = True
    act_layer: str = Field("GELU", description="a torch.nn activation class name, as ml-4m's config.json has it")
    gated_mlp: bool = False
    qk_norm: bool = False
    drop_path_rate_encoder: float = Field(0.0, ge=0.0, lt=1.0)
    drop_path_rate_decoder: float = Field(0.0, ge=0.0, lt=1.0)
    shared_drop_path: bool = False
    decoder_causal_mask: bool = False
    decoder_sep_mask: bool = True
    num_register_tokens: int = Field(0, ge=0)
    share_modality_embeddings: bool = True
    share_embedding: bool = Field(False, description="tie each output head to its token embedding")
    shuffle_decoder_modalities: bool = Field(True, description="a new decoder modality order every call (ml-4m)")
    use_act_checkpoint: bool = Field(False, description="recompute block activations in backward (training memory)")

    @model_validator(mode="after")
    def _consistent(self) -> FourMConfig:
        problems = []
        if self.act_layer not in ACTIVATIONS:
            problems.append(f"act_layer {self.act_layer!r} is not one of {', '.join(ACTIVATIONS)}")
        if self.dim % self.num_heads:
            problems.append(f"dim {self.dim} is not a multiple of num_heads {self.num_heads}")
        for field, flag in (("domains_in", "input"), ("domains_out", "target")):
            domains = getattr(self, field)
            unknown = [k for k in domains if k not in self.keys]
            if unknown:
                problems.append(f"{field} {unknown} are not in the key table (keys: {', '.join(self.keys)})")
            wrong = [k for k in domains if k in self.keys and not getattr(self.keys[k], flag)]
            if wrong:
                problems.append(f"{field} {wrong} cannot be {'inputs' if flag == 'input' else 'targets'}")
            if len(set(domains)) != len(domains):
                problems.append(f"{field} names a key twice")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # ---------------------------------------------------------------- files
    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` (this layout, key table included) into ``directory``."""
        path = Path(directory) / CONFIG_NAME
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2))
        return path

    # ---------------------------------------------------------------- the official boundary
    def to_official(self) -> dict[str, Any]:
        """ml-4m's ``config.json``: the sizes and flags under their official names plus ``image_size`` /
        ``patch_size``, no key table (ml-4m's ``FM`` rebuilds it from the domains). Settings ml-4m cannot express
        (an unshuffled decoder, tied heads) are errors, not silently dropped."""
        lost = [f"{k}={getattr(self, k)}" for k, v in _FOURM_ONLY.items() if getattr(self, k) != v]
        if lost:
            raise ValueError(f"the official config.json cannot express {', '.join(lost)}")
        data = self.model_dump(mode="json", exclude={"keys", *_FOURM_ONLY})
        if not data["use_act_checkpoint"]:  # a training-memory switch; written only when set
            del data["use_act_checkpoint"]
        return {**data, **_official_sizes(self.keys)}

    @classmethod
    def from_official(
        cls,
        data: Mapping[str, Any],
        registry: Any,
        *,
        preset: str = "paper",
        text_vocab_size: int = DEFAULT_TEXT_VOCAB,
    ) -> FourMConfig:
        """A config from ml-4m's ``config.json`` (the flat ``FM(config)`` kwargs; a ``{"config": {...}}`` wrapper
        is unwrapped). The key table is built from the registry as ml-4m's ``FM`` builds its ``modality_info``
        (see :func:`official_key_table`). Every keyword ml-4m's ``FM`` / ``FourM`` accepts is accepted; a name they
        would refuse is an error naming it."""
        data = dict(data)
        if set(data) == {"config"} and isinstance(data["config"], Mapping):
            data = dict(data["config"])
        # fourm's own fields would pass validation but ml-4m's FM refuses them; other unknown names are refused by
        # the model's validation below, which names them too
        fourm_only = sorted(set(data) & (set(cls.model_fields) - OFFICIAL_FIELDS))
        if fourm_only:
            raise ValueError(
                f"official config: {', '.join(fourm_only)} {'is a' if len(fourm_only) == 1 else 'are'} fourm "
                f"setting(s) ml-4m's FM / FourM does not accept (it accepts {', '.join(sorted(OFFICIAL_FIELDS))})"
            )
        missing = [k for k in ("domains_in", "domains_out") if k not in data]
        if missing:
            raise ValueError(f"official config: missing {', '.join(missing)}")
        image_size, patch_size = data.pop("image_size", None), data.pop("patch_size", None)
        data.pop("norm_layer", None)  # FM replaces it with LayerNorm(eps=1e-6, bias=norm_bias)
        domains = list(dict.fromkeys([*data["domains_in"], *data["domains_out"]]))
        keys = official_key_table(
            domains,
            registry,
            image_size=image_size,
            patch_size=patch_size,
            preset=preset,
            text_vocab_size=text_vocab_size,
        )
        return cls.model_validate({**data, "keys": keys})


#: The ``config.json`` names ml-4m's ``FM(config)`` accepts: its own (domains, image and patch size, ``norm_bias``)
#: and every keyword of ``FourM.__init__`` except the embedding dicts and ``modality_info`` it builds itself.
OFFICIAL_FIELDS = frozenset(
    {
        "domains_in",
        "domains_out",
        "image_size",
        "patch_size",
        "norm_bias",
        "dim",
        "encoder_depth",
        "decoder_depth",
        "num_heads",
        "mlp_ratio",
        "qkv_bias",
        "proj_bias",
        "mlp_bias",
        "drop_path_rate_encoder",
        "drop_path_rate_decoder",
        "shared_drop_path",
        "act_layer",
        "norm_layer",
        "gated_mlp",
        "qk_norm",
        "decoder_causal_mask",
        "decoder_sep_mask",
        "num_register_tokens",
        "use_act_checkpoint",
        "share_modality_embeddings",
    }
)


def official_key_table(
    domains: list[str],
    registry: Any,
    *,
    image_size: int | None = None,
    patch_size: int | None = None,
    preset: str = "paper",
    text_vocab_size: int = DEFAULT_TEXT_VOCAB,
) -> KeyTable:
    """The key table ml-4m's ``FM`` builds for ``domains``, from the installed plugins.

    ml-4m looks each key up in its ``MODALITY_INFO``, where every grid key carries its own ``input_size`` (the
    ``@224`` / ``@448`` of its name) and ``patch_size`` (16, DINOv2 / ImageBind 14), and falls back to the config's
    ``image_size`` / ``patch_size`` only for entries without them. fourm finds the plugin by the key's stem (the
    part before ``@``), so ``rgb@448`` and ``tok_depth@448`` (the super-resolution model) come from the same
    plugins as their ``@224`` keys: the resolution in the name sets the image size, the spec keeps its patch. A grid
    key without a resolution in its name takes the config's image and patch size (the patch only when the spec uses
    the standard 16). Unknown stems are an error naming them and the installed keys."""
    stems: dict[str, tuple[str, list[Any]]] = {}
    for key, members in registry.model_keys(preset).items():
        stems.setdefault(key.split("@", 1)[0], (key, members))
    infos, unknown = [], []
    for key in domains:
        stem, _, res = key.partition("@")
        if stem not in stems:
            unknown.append(key)
            continue
        members = stems[stem][1]
        spec = members[0].spec
        if res:
            if not res.isdigit() or not spec.key_has_resolution:
                unknown.append(key)
                continue
            size: int | None = int(res)
            patch: int | None = None
        elif spec.key_has_resolution:  # ml-4m's keys without "@" (rgb, depth) are tokenizer-training entries
            unknown.append(key)
            continue
        else:
            size, patch = image_size, patch_size
        info = KeyInfo.from_spec(
            key,
            spec,
            preset,
            members=[m.name for m in members],
            text_vocab_size=text_vocab_size,
            image_size=size,
            patch_size=patch,
        )
        flags: dict[str, Any] = {
            "input": any(not m.spec.target_only for m in members),
            "target": any(m.spec.is_target for m in members),
        }
        limits = [m.spec.official.max_length for m in members if m.spec.official and m.spec.official.max_length]
        if limits:  # the official decoder embedding's own max_length (metadata 40, poses 263)
            flags["decoder_positions"] = min(limits)
        infos.append(info.model_copy(update=flags))
    if unknown:
        known = ", ".join(registry.model_keys(preset))
        raise KeyTableError(f"no installed plugin provides model keys {unknown} (installed: {known})")
    return KeyTable(infos)


def _official_sizes(keys: KeyTable) -> dict[str, int]:
    """``image_size`` / ``patch_size`` an official config needs to rebuild ``keys``: the grid keys' common image
    size and their most common patch (keys with a patch of their own keep it when ml-4m rebuilds them)."""
    grids = [info for info in keys.values() if info.is_grid and info.image_size and info.patch_size]
    if not grids:
        return {"image_size": 224, "patch_size": 16}  # ml-4m's defaults; nothing depends on them
    sizes = {int(info.image_size or 0) for info in grids}
    if len(sizes) > 1:
        raise ValueError(f"the official config.json has one image_size; the grid keys have {sorted(sizes)}")
    patch = Counter(int(info.patch_size or 0) for info in grids).most_common(1)[0][0]
    return {"image_size": sizes.pop(), "patch_size": patch}


def is_official_config(data: Any) -> bool:
    """Whether a parsed ``config.json`` is ml-4m's official model config (domains, no key table), possibly wrapped
    as ``{"config": {...}}``, rather than fourm's own (with ``keys`` or ``modality_info``)."""
    if isinstance(data, Mapping) and set(data) == {"config"}:
        data = data["config"]
    return (
        isinstance(data, Mapping)
        and "domains_in" in data
        and "domains_out" in data
        and "keys" not in data
        and "modality_info" not in data
    )


def fourm_config(
    keys: KeyTable | Mapping[str, Any], size: str = "tiny", recipe: str = "swiglu_nobias", **overrides: Any
) -> FourMConfig:
    """The config of an official ``size`` / ``recipe`` over every input and target of ``keys`` (a table, or
    ``{key: KeyInfo}`` / an ml-4m ``modality_info`` dict); ``overrides`` replace fields (unknown ones are errors)."""
    table = KeyTable.coerce(keys)
    if size not in SIZES or recipe not in RECIPES:
        raise ValueError(f"unknown size {size!r} or recipe {recipe!r} (sizes: {list(SIZES)}, recipes: {list(RECIPES)})")
    data = {"domains_in": table.inputs(), "domains_out": table.targets(), **SIZES[size], **RECIPES[recipe]}
    return FourMConfig.model_validate({**data, **overrides, "keys": table})


def read_config(directory: str | Path, registry: Any = None, **overrides: Any) -> FourMConfig:
    """The config in ``directory/config.json``, whichever layout it has: fourm's (with ``keys``), fourm's before the
    key table (an ml-4m ``modality_info`` dict beside the fields) or ml-4m's official one (domains, image and patch
    size; the key table comes from ``registry``, the installed plugins by default). ``overrides`` replace fields."""
    data = read_json(Path(directory) / CONFIG_NAME, "model config")
    if not isinstance(data, dict):
        raise ValueError(f"{directory}/{CONFIG_NAME}: a config holds a mapping")
    data.update(overrides)
    if "keys" in data:
        return FourMConfig.model_validate(data)
    if "modality_info" in data:
        try:
            keys = KeyTable.from_modality_info(data.pop("modality_info"))
        except KeyTableError as e:
            raise ValueError(f"{directory}/{CONFIG_NAME}: {e}") from None
        return FourMConfig.model_validate({**data, "keys": keys})
    if registry is None:
        from fourm_core.registry import Registry

        registry = Registry()
    return FourMConfig.from_official(data, registry)
