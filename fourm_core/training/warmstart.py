"""Start a run from published or earlier weights whose modality keys differ from the run's (``model.init``).

This is how a plugin installed since a checkpoint was made joins it: fine-tune ``EPFL-VILAB/4M-21_B`` (or 4M-7, or a
fourm run) with one more modality. ``model.init`` names a hub id, a folder in the hub layout (``config.json`` +
``model.safetensors``, the official layout or fourm's), a bare ``.safetensors`` whose metadata holds the official
config, or a fourm run folder (its ``final/`` export). What happens, tensor by tensor:

- **shared** keys (in the checkpoint and in the run) keep their weights: encoder and decoder embeddings and heads,
  and the whole trunk (blocks, norms, ``decoder_proj_context``, ``mask_token``, register tokens). A key that differs
  only by its ``@resolution`` suffix (an official ``tok_depth@224`` for a run's ``tok_depth@64``) counts as shared.
  A shared tensor whose shape differs (another vocabulary size, another patch size) is re-initialised and listed
  with both shapes;
- **new** keys (only in the run) keep the network's own fresh initialisation;
- **dropped** keys (only in the checkpoint) are listed;
- buffers are never loaded: the sin-cos position tables and the zero biases of no-bias norms are rebuilt by the
  network for the run's grids (ml-4m's fine-tuning drops the ``.pos_emb`` entries and loads non-strictly, which
  is what makes 4M-7 -> 4M-21 work; learned position embeddings, which are parameters, are kept when they fit).

Sizes, the behaviour chosen here: every network field (sizes, recipe flags, masks, drop paths) comes from the
checkpoint unless the run config sets it (``model.size`` or ``model.recipe`` written in the file, even at their
default values, or a ``model.overrides`` entry; a default left out is not a choice); a field that shapes
the trunk's weights or its function (:data:`TRUNK_FIELDS`) that the run sets must equal the checkpoint's, or the
run stops before anything is built with one line naming each difference. So ``model.init`` alone adopts the
checkpoint's architecture, and a config that names another one is refused rather than half-loaded.

Reading is safetensors and JSON only; hub ids go through :func:`fourm_core.hub.resolve` (``HF_HUB_OFFLINE`` and the
cache honoured) via :func:`fourm_core.model.official.read_official`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fourm_core.errors import UserError, load_safetensors, read_json
from fourm_core.keys import KeyTable
from fourm_core.model.config import (
    CONFIG_NAME,
    RECIPES,
    SIZES,
    FourMConfig,
    fourm_config,
    is_official_config,
    read_config,
)

__all__ = [
    "TRUNK_FIELDS",
    "InitCheckpoint",
    "InitError",
    "InitReport",
    "build_network",
    "network_config",
    "read_init",
    "warm_start",
]

#: network fields that decide the trunk's tensors or what they compute: a run that sets one must match the checkpoint
TRUNK_FIELDS = (
    "dim",
    "encoder_depth",
    "decoder_depth",
    "num_heads",
    "mlp_ratio",
    "qkv_bias",
    "proj_bias",
    "mlp_bias",
    "norm_bias",
    "act_layer",
    "gated_mlp",
    "qk_norm",
    "num_register_tokens",
)
#: the run folder's export a fourm run folder is read from (``engine.FINAL``, not imported: the engine imports us)
_FINAL = "final"
#: the fixture-only key of official configs (``fourm_core.model.official.SIZE_OVERRIDES``; that module loads the hub
#: client, so it is imported only when an official checkpoint is read)
SIZE_OVERRIDES = "fourm_size_overrides"
_WEIGHTS = "model.safetensors"
_EMBEDDINGS = ("encoder_embeddings", "decoder_embeddings")
_SIDE = {"encoder_embeddings": "encoder", "decoder_embeddings": "decoder"}


class InitError(UserError, ValueError):
    """``model.init`` cannot start this run (another trunk, a checkpoint missing trunk tensors): one line."""


@dataclass
class InitCheckpoint:
    """The weights ``model.init`` names, read: where from, the network fields of its config (FourMConfig names;
    the official config uses the same ones) and the tensors by state-dict name."""

    source: str
    path: Path
    layout: str
    fields: dict[str, Any]
    state: dict[str, torch.Tensor]


@dataclass
class InitReport:
    """What a warm start did, for the log and the console."""

    source: str
    loaded: int = 0
    parameters: int = 0
    shared: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    reinitialised: dict[str, str] = field(default_factory=dict)
    adopted: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """The summary a user reads at the start of the run."""
        out = [f"init from {self.source}: {self.loaded} of {self.parameters} tensors loaded"]
        if self.adopted:
            out.append("  sizes from the checkpoint: " + ", ".join(f"{k}={v}" for k, v in self.adopted.items()))
        out.append(f"  shared keys: {', '.join(self.shared) or '-'}")
        for old, new in self.renamed.items():
            out.append(f"  {old} (checkpoint) -> {new} (run): same modality at another resolution")
        out.append(f"  new keys (fresh embeddings and heads): {', '.join(self.new) or '-'}")
        out.append(f"  dropped keys (in the checkpoint, not in this run): {', '.join(self.dropped) or '-'}")
        for name, why in self.reinitialised.items():
            out.append(f"  re-initialised {name}: {why}")
        return out

    def record(self) -> dict[str, Any]:
        """The ``log.jsonl`` line (``kind: init``, step 0, so a resumed log keeps it)."""
        return {
            "kind": "init",
            "step": 0,
            "source": self.source,
            "loaded": self.loaded,
            "parameters": self.parameters,
            "shared": self.shared,
            "renamed": self.renamed,
            "new": self.new,
            "dropped": self.dropped,
            "reinitialised": self.reinitialised,
            "adopted": self.adopted,
        }


# -- reading ---------------------------------------------------------------------------------------------------------
def read_init(source: str, registry: Any = None, revision: str | None = None) -> InitCheckpoint:
    """The checkpoint ``source`` names (see the module docstring for what it may be). A fourm folder (its
    ``config.json`` has a key table) is read here; everything else (official layouts, bare files, hub ids) by
    :func:`fourm_core.model.official.read_official`."""
    path = Path(source).expanduser()
    if path.is_dir() and not (path / CONFIG_NAME).is_file() and (path / _FINAL / CONFIG_NAME).is_file():
        path = path / _FINAL  # a fourm run folder: its exported weights
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        if not is_official_config(read_json(path / CONFIG_NAME, "model config")):
            config = read_config(path, registry)
            fields = config.model_dump(exclude={"keys"})
            return InitCheckpoint(source, path, "fourm", fields, load_safetensors(path / _WEIGHTS, "model weights"))
    from fourm_core.model.official import read_official

    data, state = read_official(source, revision=revision)
    return InitCheckpoint(source, path, "official", dict(data), dict(state))


# -- the run's network -----------------------------------------------------------------------------------------------
def network_config(model: Any, keys: KeyTable, init: InitCheckpoint | None = None) -> FourMConfig:
    """The run's :class:`FourMConfig` over ``keys`` from its ``model`` section (a
    :class:`~fourm_core.training.config.ModelConfig`): without ``init``, the named (or default) size and recipe with
    the overrides; with it, the checkpoint's fields except those the run sets, which must equal the checkpoint's
    for :data:`TRUNK_FIELDS` (else :class:`InitError`)."""
    if init is None:
        return fourm_config(keys, model.size, model.recipe, **model.overrides)
    explicit = _explicit(model)
    theirs = checkpoint_fields(init)
    differ = [
        f"{k} {explicit[k]!r} (run) vs {theirs[k]!r} (checkpoint)"
        for k in TRUNK_FIELDS
        if k in explicit and explicit[k] != theirs[k]
    ]
    if differ:
        raise InitError(
            f"model.init {init.source}: the run's trunk differs from the checkpoint's: {'; '.join(differ)} "
            "(leave model.size / model.recipe / model.overrides unset to adopt the checkpoint's)"
        )
    return fourm_config(keys, model.size, model.recipe, **{**theirs, **explicit})


def _explicit(model: Any) -> dict[str, Any]:
    """The network fields a run's ``model`` section sets: its size's and recipe's when the config names them
    (pydantic's ``model_fields_set``: a default is not a choice), and the overrides."""
    named = model.model_fields_set
    return {
        **(SIZES[model.size] if "size" in named else {}),
        **(RECIPES[model.recipe] if "recipe" in named else {}),
        **model.overrides,
    }


def checkpoint_fields(init: InitCheckpoint) -> dict[str, Any]:
    """Every network field (domains and key table aside) as the checkpoint has it, FourMConfig's defaults (ml-4m's
    ``FourM`` defaults) where its config leaves one out. A CI fixture's ``fourm_size_overrides["model"]`` applies
    (the official loader's convention, :mod:`fourm_core.model.official`)."""
    fields = dict(init.fields)
    extra = fields.pop(SIZE_OVERRIDES, None)
    if isinstance(extra, Mapping):
        fields.update(extra.get("model") or {})
    out = {}
    for name, info in FourMConfig.model_fields.items():
        if name in ("keys", "domains_in", "domains_out"):
            continue
        out[name] = fields.get(name, info.default)
    return out


def build_network(config: Any, keys: KeyTable, registry: Any = None) -> tuple[nn.Module, InitReport | None]:
    """The network a run (a :class:`~fourm_core.training.config.RunConfig`) starts from, over the data's ``keys``:
    freshly initialised (under the run's seed) and, with ``model.init``, warm-started from that checkpoint.
    Returns it with the warm start's report (``None`` without ``model.init``)."""
    from fourm_core.model.network import FourMNetwork

    init = read_init(config.model.init, registry, config.model.init_revision) if config.model.init else None
    net_config = network_config(config.model, keys, init)
    torch.manual_seed(config.seed)  # the same initial weights on every rank (new keys' fresh ones included)
    network = FourMNetwork(net_config)
    if init is None:
        return network, None
    report = warm_start(network, init)
    explicit = _explicit(config.model)
    report.adopted = {k: getattr(net_config, k) for k in TRUNK_FIELDS if k not in explicit}
    return network, report


# -- the warm start --------------------------------------------------------------------------------------------------
def _split(name: str) -> tuple[str, str, str] | None:
    """``decoder_embeddings.caption.to_logits.weight`` -> (``decoder_embeddings``, ``caption``, ``to_logits.weight``);
    ``None`` for trunk tensors. Model keys never hold a dot (``nn.ModuleDict`` refuses them)."""
    group, _, rest = name.partition(".")
    if group not in _EMBEDDINGS:
        return None
    key, _, tail = rest.partition(".")
    return group, key, tail


def _base(key: str) -> str:
    """``tok_depth@224`` -> ``tok_depth`` (the modality, whatever its resolution)."""
    return key.partition("@")[0]


def match_keys(run: Mapping[str, set[str]], checkpoint: Mapping[str, set[str]]) -> dict[str, str]:
    """``{run key: checkpoint key}`` for the keys both have (``{key: sides}`` each): the same name, else the one
    checkpoint key of the same modality at another resolution that no run key has by name."""
    matched = {k: k for k in run if k in checkpoint}
    free: dict[str, list[str]] = {}
    for k in checkpoint:
        if k not in run:
            free.setdefault(_base(k), []).append(k)
    for k in run:
        if k not in matched and len(free.get(_base(k), [])) == 1:
            matched[k] = free[_base(k)][0]
    return matched


def _sides(names: Any) -> dict[str, set[str]]:
    """``{model key: {"encoder", "decoder"}}`` of the embedding tensors named."""
    out: dict[str, set[str]] = {}
    for name in names:
        parts = _split(name)
        if parts is not None:
            out.setdefault(parts[1], set()).add(_SIDE[parts[0]])
    return out


def _label(key: str, sides: set[str], everything: set[str]) -> str:
    """``caption``, or ``caption (decoder)`` when only one of the key's sides is meant."""
    return key if sides == everything else f"{key} ({', '.join(sorted(sides))})"


def warm_start(network: nn.Module, init: InitCheckpoint) -> InitReport:
    """Copy ``init``'s tensors into ``network``'s parameters where names (keys matched by :func:`match_keys`) and
    shapes agree; see the module docstring. Every trunk parameter must load (:class:`InitError` names the first
    ones that do not: the sizes were checked, so this is a checkpoint of another model)."""
    state = init.state
    run_sides = _sides(name for name, _ in network.named_parameters(remove_duplicate=False))
    ckpt_sides = _sides(state)
    keys = match_keys(run_sides, ckpt_sides)
    report = InitReport(init.source, renamed={c: r for r, c in keys.items() if c != r})

    # each parameter once, with every name it has (a key's shared mod_emb is both encoder's and decoder's)
    names: dict[int, list[str]] = {}
    params: dict[int, nn.Parameter] = {}
    for name, p in network.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
        params[id(p)] = p
    trunk_missing: list[str] = []
    with torch.no_grad():
        for pid, p in params.items():
            report.parameters += 1
            sources = [_source_name(n, keys) for n in names[pid]]
            found = [s for s in sources if s is not None and s in state]
            if not found:
                parts = _split(names[pid][0])
                if parts is None:
                    trunk_missing.append(names[pid][0])
                elif parts[1] in keys and _SIDE[parts[0]] in ckpt_sides[keys[parts[1]]]:
                    report.reinitialised[names[pid][0]] = "not in the checkpoint's embedding of this key"
                continue  # a new key: the network's own init
            tensor = state[found[0]]
            if tuple(tensor.shape) != tuple(p.shape):
                if _split(names[pid][0]) is None:
                    trunk_missing.append(f"{names[pid][0]} {tuple(tensor.shape)} vs {tuple(p.shape)}")
                    continue
                report.reinitialised[names[pid][0]] = (
                    f"shape {tuple(tensor.shape)} in the checkpoint, {tuple(p.shape)} in the run"
                )
                continue
            p.copy_(tensor.to(p.dtype))
            report.loaded += 1
    if trunk_missing:
        shown = ", ".join(trunk_missing[:3]) + (f" and {len(trunk_missing) - 3} more" if len(trunk_missing) > 3 else "")
        raise InitError(f"model.init {init.source}: the checkpoint's trunk does not fit the run's ({shown})")

    for key, sides in run_sides.items():
        theirs = ckpt_sides.get(keys[key], set()) if key in keys else set()
        if sides & theirs:
            report.shared.append(_label(key, sides & theirs, sides))
        if sides - theirs:
            report.new.append(_label(key, sides - theirs, sides))
    matched = set(keys.values())
    for key, sides in ckpt_sides.items():
        ours = run_sides.get(_run_key(key, keys), set()) if key in matched else set()
        if sides - ours:
            report.dropped.append(_label(key, sides - ours, sides))
    return report


def _source_name(name: str, keys: Mapping[str, str]) -> str | None:
    """The checkpoint's name for the run's tensor ``name`` (its key renamed as matched), ``None`` if the key is new."""
    parts = _split(name)
    if parts is None:
        return name
    group, key, tail = parts
    if key not in keys:
        return None
    return f"{group}.{keys[key]}.{tail}"


def _run_key(checkpoint_key: str, keys: Mapping[str, str]) -> str:
    return next(r for r, c in keys.items() if c == checkpoint_key)
