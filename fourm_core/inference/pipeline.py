"""One object for inference: the network and everything around it that generation, retrieval, rendering and
evaluation need.

A network alone cannot generate for a person: inputs must be tokenised by the modalities' tokenizers, texts by the
vocabulary it was trained with, outputs decoded back, modality names mapped to the model keys of its preset, and
every key's facts read from its :class:`~fourm_core.keys.KeyTable`. :class:`Pipeline` holds these once (registry,
preset, key table, vocabulary, tokenizer directory, network, device) so that no inference function takes them as
loose arguments in its own order. Build it from a network (:meth:`Pipeline.create`), from a run folder
(:meth:`Pipeline.from_pretrained`) or from the user-facing :class:`fourm_core.FourM` (its ``.pipeline``).

A pipeline without a network (``network=None``) is enough to check and build requests (names, inputs, text
queries) before a model is loaded; :meth:`Pipeline.with_network` adds it.

:meth:`Pipeline.from_pretrained` also loads the published 4M models (a hub id such as ``EPFL-VILAB/4M-21_B``, a
folder in the hub layout or a bare ``.safetensors`` with its config in the metadata; see
:mod:`fourm_core.model.official`). Their text vocabulary is ml-4m's WordPiece file, which is not on the hub: it is
taken from ``vocabulary=`` or ``$FOURM_OFFICIAL_VOCAB``; without it the first sequence input or target fails with
one line naming the file and where to get it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fourm_core.errors import FileFormatError, UserError, read_json
from fourm_core.keys import KeyTable

__all__ = [
    "OFFICIAL_TOKENIZERS",
    "OFFICIAL_VOCAB_ENV",
    "Encoding",
    "ModelAssetsError",
    "Pipeline",
    "as_pipeline",
    "model_folder",
    "official_source",
    "recorded_assets",
]

#: file names written by ``FourMNetwork.save_pretrained`` and ``fourm train`` (model/network.py, training/engine.py)
_WEIGHTS, _CONFIG, _ASSETS = "model.safetensors", "config.json", "fourm.json"
_RUN_CONFIG, _FINAL = "config.yaml", "final"
#: ``tokenizers="official"``: every modality's published ml-4m tokenizer (resolved by the registry), not a folder
OFFICIAL_TOKENIZERS = "official"
#: where an official model's text vocabulary comes from when ``vocabulary=`` is not given
OFFICIAL_VOCAB_ENV = "FOURM_OFFICIAL_VOCAB"
#: the preset whose model keys are ml-4m's (``tok_rgb@224`` ...): the official models' preset
_OFFICIAL_PRESET = "paper"
_OFFICIAL_VOCAB_FILE = "fourm/utils/tokenizer/trained/text_tokenizer_4m_wordpiece_30k.json"
_OFFICIAL_VOCAB_URL = f"https://raw.githubusercontent.com/apple/ml-4m/main/{_OFFICIAL_VOCAB_FILE}"
NO_OFFICIAL_VOCAB = (
    "the official 4M models read and write text with ml-4m's WordPiece vocabulary, which is not on the hub: "
    f"download {_OFFICIAL_VOCAB_URL} (ml-4m's {_OFFICIAL_VOCAB_FILE}) and pass vocabulary= (--vocab) or set "
    f"{OFFICIAL_VOCAB_ENV}"
)


class ModelAssetsError(UserError, FileNotFoundError):
    """A model folder without weights, or a request that needs an asset (vocabulary, tokenizers) nobody named."""


def model_folder(path: str | os.PathLike[str]) -> Path:
    """The folder holding ``model.safetensors`` + ``config.json``: ``path`` itself or a run's ``final/``."""
    path = Path(path)
    for candidate in (path, path / _FINAL):
        if (candidate / _CONFIG).is_file() and (candidate / _WEIGHTS).is_file():
            return candidate
    raise ModelAssetsError(
        f"{path}: no {_CONFIG} + {_WEIGHTS} here or in {path / _FINAL} (give a run folder or its final/)"
    )


def recorded_assets(folder: Path) -> dict[str, Any]:
    """What the run recorded about the model's assets: ``fourm.json`` next to the weights, else the run's config
    (``../config.yaml``, JSON written by ``fourm train``); missing entries are absent."""
    side = folder / _ASSETS
    if side.is_file():
        recorded = read_json(side, "model assets record (fourm.json)")
        if not isinstance(recorded, dict):
            raise FileFormatError(f"{side}: expected a JSON object of the model's assets")
        return {k: v for k, v in recorded.items() if v}
    run_config = folder.parent / _RUN_CONFIG
    if run_config.is_file():
        try:
            data = json.loads(run_config.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):  # a YAML config written by hand records nothing here
            return {}
        return {k: data[k] for k in ("vocabulary", "tokenizers") if isinstance(data, dict) and data.get(k)}
    return {}


@dataclass(frozen=True)
class Pipeline:
    """Registry, preset, key table, vocabulary, tokenizer directory and network of one model (see the module
    docstring). ``vocabulary`` ``None``: sequence inputs and targets are refused with a clear error;
    ``tokenizers`` ``None``: image and global-token inputs and targets are refused."""

    registry: Any
    preset: str
    keys: KeyTable
    network: Any = None
    vocabulary: Any = None
    tokenizers: str | None = None
    #: why there is no vocabulary when that needs saying (an official model): raised at the first text in or out
    missing_vocabulary: str | None = None

    # ---------------------------------------------------------------------------------------------- building
    @classmethod
    def create(
        cls,
        network: Any = None,
        registry: Any = None,
        preset: str | None = None,
        vocabulary: Any = None,
        tokenizers: str | os.PathLike[str] | None = None,
    ) -> Pipeline:
        """The pipeline of ``network`` (its key table; the preset inferred from its keys unless given). Without a
        network, ``preset`` is required and the key table is the registry's for it."""
        from fourm_core.inference.requests import infer_preset
        from fourm_core.inference.tables import key_table_of
        from fourm_core.registry import Registry

        registry = registry or Registry()
        if network is None:
            if preset is None:
                raise ValueError("a pipeline without a network needs its preset")
            size = {"text_vocab_size": vocabulary.size} if vocabulary is not None else {}
            keys = KeyTable.from_registry(registry, preset, **size)
        else:
            keys = key_table_of(network)
            preset = infer_preset(registry, keys, preset)
        official = str(tokenizers) == OFFICIAL_TOKENIZERS  # the registry resolves each published tokenizer
        if tokenizers is not None and not official and not Path(tokenizers).is_dir():  # a typo is not "untrained"
            raise ModelAssetsError(
                f"the tokenizer folder {tokenizers} does not exist (give the folder `fourm tokenizer train` wrote)"
            )
        directory = str(tokenizers) if tokenizers is not None else None
        return cls(registry, preset, keys, network, vocabulary, directory)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        tokenizers: str | os.PathLike[str] | None = None,
        vocabulary: str | os.PathLike[str] | Any = None,
        preset: str | None = None,
        device: str = "cpu",
        registry: Any = None,
        revision: str | None = None,
    ) -> Pipeline:
        """Load a fourm run folder (or its ``final/``), or a published 4M model: a hub id (``EPFL-VILAB/4M-21_B``,
        at ``revision``), a folder in the hub layout or a bare ``.safetensors`` with its config in the metadata.

        A run's ``tokenizers`` / ``vocabulary`` default to what training recorded (``final/fourm.json`` or the run
        config), then ``$FOURM_TOKENIZERS`` for the tokenizers. An official model's vocabulary defaults to
        ``$FOURM_OFFICIAL_VOCAB`` and its preset to ``paper``; ``tokenizers="official"`` picks every modality's
        published tokenizer. A vocabulary may be a path or a loaded :class:`~fourm_core.vocab.TextVocabulary`."""
        from fourm_core.model.network import FourMNetwork
        from fourm_core.registry import Registry

        registry = registry or Registry()
        source = official_source(path, revision)
        if source is not None:
            return cls._from_official(source, tokenizers, vocabulary, preset, device, registry)
        folder = model_folder(path)
        recorded = recorded_assets(folder)
        tokenizers = tokenizers or recorded.get("tokenizers") or os.environ.get("FOURM_TOKENIZERS")
        vocabulary = _load_vocabulary(vocabulary or recorded.get("vocabulary"), folder)
        network = FourMNetwork.from_pretrained(folder, registry=registry).to(device).eval()
        return cls.create(network, registry, preset or recorded.get("preset"), vocabulary, tokenizers)

    @classmethod
    def _from_official(
        cls, source: Path, tokenizers: Any, vocabulary: Any, preset: str | None, device: str, registry: Any
    ) -> Pipeline:
        from fourm_core.model.official import load_official

        vocabulary = _load_vocabulary(vocabulary or os.environ.get(OFFICIAL_VOCAB_ENV) or None, source)
        network = load_official(source, registry).to(device).eval()
        pipe = cls.create(network, registry, preset or _OFFICIAL_PRESET, vocabulary, tokenizers)
        return pipe if vocabulary is not None else dataclasses.replace(pipe, missing_vocabulary=NO_OFFICIAL_VOCAB)

    def with_network(self, network: Any) -> Pipeline:
        """This pipeline around ``network`` (its own key table, which must be of this preset)."""
        from fourm_core.inference.requests import infer_preset
        from fourm_core.inference.tables import key_table_of

        keys = key_table_of(network)
        return dataclasses.replace(
            self, network=network, keys=keys, preset=infer_preset(self.registry, keys, self.preset)
        )

    # ---------------------------------------------------------------------------------------------- parts
    @property
    def device(self) -> Any:
        """Where the network's weights live (``cpu`` without a network)."""
        import torch

        if self.network is None:
            return torch.device("cpu")
        return next(self.network.parameters()).device

    def require_network(self) -> Any:
        if self.network is None:
            raise ValueError("this pipeline has no network: build it with a model (Pipeline.create / with_network)")
        return self.network

    def resolve(self, name: str) -> Any:
        """The :class:`~fourm_core.inference.requests.Requested` behind a modality name or model key."""
        from fourm_core.inference.requests import resolve

        return resolve(self.registry, self.preset, name)

    def tokenizer(self, modality: str) -> Any:
        """``modality``'s trained tokenizer from the pipeline's directory (the registry's error when missing)."""
        return self.registry.tokenizer(modality, self.preset, self.tokenizers)

    def tokenizer_lookup(self) -> Any:
        """A ``name -> tokenizer or None`` function for decoders (:class:`~fourm_core.viz.rendering.RenderContext`)."""
        from fourm_core.viz.rendering import tokenizer_lookup

        return tokenizer_lookup(self.registry, self.preset, self.tokenizers)

    def render_context(self, image: Any = None, size: int = 128) -> Any:
        """What a decoder draws with: ``image`` (the input picture) as the canvas, this preset and tokenizers."""
        from fourm_core.viz.rendering import RenderContext

        return RenderContext(image=image, size=size, preset=self.preset, tokenizer=self.tokenizer_lookup())

    def sampler(self, **options: Any) -> Any:
        """A :class:`~fourm_core.inference.sampler.GenerationSampler` over the network and its key table."""
        from fourm_core.inference.sampler import GenerationSampler

        options.setdefault("vocabulary", self.vocabulary)  # names the words of a refused prefix
        return GenerationSampler(self.require_network(), keys=self.keys, **options)

    # ---------------------------------------------------------------------------------------------- use
    def generate(self, batch: Sequence[Mapping[str, Any]], targets: str | Sequence[str], **options: Any) -> list[Any]:
        """One :class:`~fourm_core.inference.outputs.GenerationResult` per sample of ``batch`` (a list of
        ``{modality: value}``); ``targets``: names, or one comma-separated string; ``options`` as
        :func:`~fourm_core.inference.outputs.run_generation` takes them, checked first
        (:func:`~fourm_core.inference.requests.check_options`: a bounded ensemble, at least one step ...)."""
        from fourm_core.inference.outputs import run_generation
        from fourm_core.inference.requests import check_options, target_names

        checked = {k: options[k] for k in ("ensemble", "steps", "temperature", "top_p") if k in options}
        check_options(**checked)
        self.require_vocabulary([name for sample in batch for name in sample], target_names(targets))
        return run_generation(self, batch, target_names(targets), **options)

    def require_vocabulary(self, inputs: Sequence[str], targets: Sequence[str] = ()) -> None:
        """Refuse, before any compute, a text input or target of a model whose vocabulary is known to be missing
        (an official model without ``vocabulary=``), naming the file that is needed."""
        from fourm_core.spec import ModalityKind

        if self.vocabulary is not None or self.missing_vocabulary is None:
            return
        for name in [*inputs, *targets]:
            try:
                kind = self.resolve(name).kind
            except (KeyError, ValueError):
                continue  # an unknown name: the request checks report it in their words
            if kind == ModalityKind.SEQUENCE:
                raise ModelAssetsError(f"{name}: {self.missing_vocabulary}")

    def encode(self, inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Encoding:
        """The encoder's view of ``inputs`` (the same ``{modality: value}`` mappings :meth:`generate` takes, one
        or a list): every visible input token after the encoder's final norm and, as ml-4m's ``FMViT`` pools for
        transfer, their mean over the valid tokens of each sample."""
        import torch

        from fourm_core.inference.requests import build_inputs

        samples = [inputs] if isinstance(inputs, Mapping) else list(inputs)
        if not samples:
            raise ValueError("no samples: give at least one input mapping")
        self.require_vocabulary([name for sample in samples for name in sample])
        built = [build_inputs(self, sample) for sample in samples]
        network, sampler = self.require_network(), self.sampler()
        keys = sorted({k for b in built for k in b if k in network.encoder_embeddings})
        mod_dict = {k: sampler.input_entry(k, [b.get(k) for b in built]) for k in keys}
        with torch.no_grad():
            tokens, _, mask = network.encode_tokens(mod_dict, sampler.encoder_tokens(mod_dict))
        valid = ~mask[:, 0]
        weights = valid.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return Encoding(tokens=tokens, mask=valid, pooled=pooled)

    def retrieve(
        self, inputs: Mapping[str, Any], index: Any, k: int = 5, seed: int = 0, check_store: bool = True
    ) -> list:
        """The ``k`` nearest stored samples to the embedding predicted from ``inputs`` (see
        :func:`~fourm_core.inference.retrieval.retrieve_for`)."""
        from fourm_core.inference.retrieval import retrieve_for

        self.require_vocabulary(list(inputs))

        return retrieve_for(self, inputs, index, k, seed=seed, check_store=check_store)


@dataclass(frozen=True)
class Encoding:
    """What :meth:`Pipeline.encode` returns: ``tokens`` (B, N, D) after the encoder's final norm, ``mask`` (B, N)
    True where a token is a real input (rows are padded to the longest sample), ``pooled`` (B, D) their mean."""

    tokens: Any
    mask: Any
    pooled: Any


def official_source(path: str | os.PathLike[str], revision: str | None) -> Path | None:
    """The local folder or file of a published model, or ``None`` for a fourm run folder. A string that is no
    existing path but is spelled like a hub repo id is fetched (or found in the hub cache)."""
    from fourm_core.hub import is_repo_id, resolve
    from fourm_core.model.official import is_official_checkpoint

    local = Path(path).expanduser()
    if local.exists():
        return local if is_official_checkpoint(local) else None
    if not is_repo_id(os.fspath(path)):
        return None  # model_folder reports the missing folder
    folder = resolve(path, revision=revision, kind="model")
    if not is_official_checkpoint(folder):
        raise ModelAssetsError(f"{path}: the repo holds no official 4M model config (config.json with domains_in)")
    return folder


def _load_vocabulary(vocabulary: Any, where: Path) -> Any:
    """A loaded :class:`~fourm_core.vocab.TextVocabulary` from a path (checked), or what was given."""
    from fourm_core.vocab import TextVocabulary

    if isinstance(vocabulary, (str, os.PathLike)):
        if not Path(vocabulary).is_file():
            raise ModelAssetsError(f"{where}: the text vocabulary {vocabulary} does not exist (pass vocabulary=)")
        return TextVocabulary.load(Path(vocabulary))
    return vocabulary


def as_pipeline(model: Any) -> Pipeline:
    """A :class:`Pipeline` from a pipeline or anything that holds one (``fourm_core.FourM``)."""
    if isinstance(model, Pipeline):
        return model
    pipeline = getattr(model, "pipeline", None)
    if isinstance(pipeline, Pipeline):
        return pipeline
    raise TypeError(f"expected an inference Pipeline or a fourm_core.FourM, got {type(model).__name__}")
