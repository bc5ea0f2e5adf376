"""The Python API: a trained model with everything it needs to generate and retrieve, in three lines.

    import fourm_core as fm
    model = fm.FourM.from_pretrained("runs/tiny")
    out = model.generate({"rgb": image}, targets=["depth", "normal", "caption", "det"], seed=0)
    out["depth"].array, out["depth"].save("depth.png"); out.show()
    hits = model.retrieve({"caption": "a person on a road"}, index="world.index", k=5)

A network alone cannot do this: inputs must be tokenised by the modalities' tokenizers, texts by the vocabulary it
was trained with, outputs decoded back, and modality names mapped to the model keys of its preset. This class
bundles the network (:class:`fourm_core.model.FourMNetwork`, an ``nn.Module``, kept as ``.network``) with the registry,
preset, vocabulary and tokenizer directory, which ``from_pretrained`` finds next to the weights (``fourm.json``,
written by ``fourm train``) or in the run's config. Every method is a thin shell over the request / sampler /
retrieval layers, so the CLI, the API and the tests run the same code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["FourM", "ModelAssetsError"]

#: file names written by ``FourMNetwork.save_pretrained`` and ``fourm train`` (model/network.py, training/engine.py)
_WEIGHTS, _CONFIG, _ASSETS = "model.safetensors", "config.json", "fourm.json"
_RUN_CONFIG, _FINAL = "config.yaml", "final"


class ModelAssetsError(FileNotFoundError):
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
        return {k: v for k, v in json.loads(side.read_text()).items() if v}
    run_config = folder.parent / _RUN_CONFIG
    if run_config.is_file():
        try:
            data = json.loads(run_config.read_text())
        except json.JSONDecodeError:
            return {}
        return {k: data[k] for k in ("vocabulary", "tokenizers") if data.get(k)}
    return {}


class FourM:
    """A trained 4M model ready for any-to-any generation and retrieval (see the module docstring).

    ``network``: the ``nn.Module``; ``preset``: its modality layout (inferred from its keys); ``vocabulary``: the
    text vocabulary (``None``: sequence inputs and targets are refused with a clear error); ``tokenizers``: the
    trained tokenizer directory (``None``: image and global-token inputs and targets are refused).
    """

    def __init__(
        self,
        network: Any,
        registry: Any = None,
        preset: str | None = None,
        vocabulary: Any = None,
        tokenizers: str | os.PathLike[str] | None = None,
    ) -> None:
        from fourm_core.inference.requests import infer_preset
        from fourm_core.registry import Registry

        self.network = network.eval()
        self.registry = registry or Registry()
        self.preset = infer_preset(self.registry, network.modality_info, preset)
        self.vocabulary = vocabulary
        self.tokenizers = str(tokenizers) if tokenizers is not None else None

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        tokenizers: str | os.PathLike[str] | None = None,
        vocabulary: str | os.PathLike[str] | Any = None,
        preset: str | None = None,
        device: str = "cpu",
        registry: Any = None,
    ) -> FourM:
        """Load a run folder (or its ``final/``). ``tokenizers`` / ``vocabulary`` default to what training
        recorded (``final/fourm.json`` or the run config), then ``$FOURM_TOKENIZERS`` for the tokenizers. A
        vocabulary may be a path or a loaded :class:`~fourm_core.vocab.TextVocabulary`."""
        from fourm_core.model.network import FourMNetwork as Network
        from fourm_core.vocab import TextVocabulary

        folder = model_folder(path)
        recorded = recorded_assets(folder)
        tokenizers = tokenizers or recorded.get("tokenizers") or os.environ.get("FOURM_TOKENIZERS")
        vocabulary = vocabulary or recorded.get("vocabulary")
        if isinstance(vocabulary, (str, os.PathLike)):
            if not Path(vocabulary).is_file():
                raise ModelAssetsError(f"{folder}: the text vocabulary {vocabulary} does not exist (pass vocabulary=)")
            vocabulary = TextVocabulary.load(vocabulary)
        network = Network.from_pretrained(folder).to(device)
        return cls(network, registry, preset or recorded.get("preset"), vocabulary, tokenizers)

    def to(self, device: str) -> FourM:
        self.network.to(device)
        return self

    @property
    def modality_info(self) -> Mapping[str, Mapping[str, Any]]:
        return self.network.modality_info

    # ------------------------------------------------------------------------------------------------ generation
    def generate(
        self,
        inputs: Mapping[str, Any],
        targets: Sequence[str],
        seed: int = 0,
        schedule: Any = None,
        steps: int = 8,
        temperature: float = 0.5,
        top_p: float | None = None,
        ensemble: int = 1,
    ) -> Any:
        """Generate ``targets`` (modality names, in order; each sees the earlier ones) from ``inputs``
        (``{modality: value}``: pictures as (H, W, 3) uint8 arrays or files, sequences as text or values, token
        modalities as stored-form arrays). Returns a :class:`~fourm_core.inference.outputs.GenerationResult`
        (``out["depth"].array``, ``.save(...)``, ``out.show()``). ``schedule``: a schedule, YAML or list of
        steps instead of the default; ``ensemble``: fuse that many generations per target."""
        from fourm_core.inference.outputs import run_generation

        return run_generation(
            self.network,
            self.registry,
            self.preset,
            self.vocabulary,
            inputs,
            targets,
            self.tokenizers,
            schedule=schedule,
            seed=seed,
            steps=steps,
            temperature=temperature,
            top_p=top_p,
            ensemble=ensemble,
        )

    # ------------------------------------------------------------------------------------------------ retrieval
    def retrieve(
        self,
        inputs: Mapping[str, Any],
        index: str | os.PathLike[str] | Any,
        k: int = 5,
        seed: int = 0,
        check_store: bool = True,
    ) -> list[Any]:
        """The ``k`` samples of the index's store nearest (cosine) to the global embedding the model predicts from
        ``inputs`` (any subset, as for :meth:`generate`); best first, as :class:`~fourm_core.inference.retrieval.Hit`.
        ``index``: an index file from ``fourm retrieve build`` (or a loaded
        :class:`~fourm_core.inference.retrieval.EmbeddingIndex`); a stale index (its store changed) is refused unless
        ``check_store=False``."""
        from fourm_core.inference.requests import build_inputs, resolve
        from fourm_core.inference.retrieval import EmbeddingIndex, RetrievalError, retrieve

        loaded = index if isinstance(index, EmbeddingIndex) else EmbeddingIndex.load(index)
        modality = loaded.meta.modality
        if not modality:
            raise RetrievalError("the index records no modality; build it with `fourm retrieve build`")
        if check_store and loaded.meta.store:
            loaded.check_store()
        key = resolve(self.registry, self.preset, modality).key
        if key not in self.network.modality_info:
            raise RetrievalError(f"{modality}: the model has no key {key!r} to predict the index's embeddings")
        if self.tokenizers is None:
            raise ModelAssetsError(
                f"{modality}: retrieval decodes predicted tokens with its tokenizer; "
                "pass tokenizers= to from_pretrained"
            )
        tokenizer = self.registry.tokenizer(modality, self.preset, self.tokenizers)
        contents = build_inputs(self.registry, self.preset, self.vocabulary, inputs, self.tokenizers, self.network)
        return retrieve(self.network, dict(contents), loaded, tokenizer, k, key, seed=seed)

    def __repr__(self) -> str:
        vocabulary = "yes" if self.vocabulary is not None else "no"
        return (
            f"FourM(preset={self.preset!r}, keys={len(self.network.modality_info)}, vocabulary={vocabulary}, "
            f"tokenizers={self.tokenizers!r})"
        )
