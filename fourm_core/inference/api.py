"""The Python API: a trained model with everything it needs to generate and retrieve, in three lines.

    import fourm_core as fm
    model = fm.FourM.from_pretrained("runs/tiny")          # or "EPFL-VILAB/4M-21_B", tokenizers="official"
    out = model.generate({"rgb": image}, targets=["depth", "normal", "caption", "det"], seed=0)
    out["depth"].array, out["depth"].save("depth.png"); out.show()
    outs = model.generate([{"rgb": a}, {"rgb": b}], targets=["depth"])    # a batch: one result per sample
    hits = model.retrieve({"caption": "a person on a road"}, index="world.index", k=5)

A network alone cannot do this: inputs must be tokenised by the modalities' tokenizers, texts by the vocabulary it
was trained with, outputs decoded back, and modality names mapped to the model keys of its preset. This class
holds an inference :class:`~fourm_core.inference.pipeline.Pipeline` (the network, :class:`fourm_core.model.FourMNetwork`
kept as ``.network``, with the registry, preset, key table, vocabulary and tokenizer directory, which
``from_pretrained`` finds next to the weights (``fourm.json``, written by ``fourm train``) or in the run's config).
Every method is a thin shell over the pipeline, so the CLI, the API and the tests run the same code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from fourm_core.inference.pipeline import ModelAssetsError, Pipeline

__all__ = ["FourM", "ModelAssetsError"]


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
        self.pipeline = Pipeline.create(network.eval(), registry, preset, vocabulary, tokenizers)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], **assets: Any) -> FourM:
        """Load a run folder (or its ``final/``) or a published 4M model: a hub id (``EPFL-VILAB/4M-21_B``), a
        folder in the hub layout (``config.json`` + ``model.safetensors``) or a bare ``.safetensors`` whose
        metadata holds the config. ``assets``: ``tokenizers`` (a folder, or ``"official"`` for the published
        ones), ``vocabulary`` (a path or a loaded vocabulary; for official models ml-4m's WordPiece file, else
        ``$FOURM_OFFICIAL_VOCAB``), ``preset``, ``device``, ``registry``, ``revision`` (of a hub id), each
        defaulting to what training recorded (see
        :meth:`Pipeline.from_pretrained <fourm_core.inference.pipeline.Pipeline.from_pretrained>`)."""
        pipeline = Pipeline.from_pretrained(path, **assets)
        model = cls.__new__(cls)
        model.pipeline = pipeline
        return model

    # the pipeline's parts, as attributes of the model
    network = property(lambda self: self.pipeline.network)
    registry = property(lambda self: self.pipeline.registry)
    preset = property(lambda self: self.pipeline.preset)
    keys = property(lambda self: self.pipeline.keys)
    vocabulary = property(lambda self: self.pipeline.vocabulary)
    tokenizers = property(lambda self: self.pipeline.tokenizers)

    def to(self, device: str) -> FourM:
        self.network.to(device)
        return self

    # ------------------------------------------------------------------------------------------------ generation
    def generate(
        self,
        inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        targets: str | Sequence[str],
        seed: int = 0,
        schedule: Any = None,
        steps: int = 8,
        temperature: float = 0.5,
        top_p: float | None = None,
        ensemble: int = 1,
        constrain: bool = True,
        prefix: Mapping[str, str | Sequence[str | None]] | None = None,
    ) -> Any:
        """Generate ``targets`` (modality names, in order, each seeing the earlier ones; one string is read as
        comma-separated names, as ``--targets`` is: ``"depth"``, ``"depth,caption"``) from ``inputs``
        (``{modality: value}``: pictures as (H, W, 3) uint8 arrays or files, sequences as text or values, token
        modalities as stored-form arrays), or from a list of such mappings (one batch). Returns a
        :class:`~fourm_core.inference.outputs.GenerationResult` (``out["depth"].array``, ``.save(...)``,
        ``out.show()``) for one mapping, a list of them for a list. ``schedule``: a schedule, YAML or list of
        steps instead of the default; ``ensemble``: fuse that many generations per target (at most
        :data:`~fourm_core.inference.requests.MAX_ENSEMBLE`: each is held in memory). Pictures given as files are
        read by the photo ingester, as ``fourm data ingest`` reads training photos (EXIF orientation, size limit);
        a mistake in the request raises an error naming the input or target before any compute. ``constrain``:
        decode sequence targets within their serializer's grammar (the default: their text always parses);
        ``False`` samples from the model's raw distribution. ``prefix``: per sequence target, the start of its
        string (one text, or one per sample of a batch), given instead of decoded: e.g. an instance's box, so the
        model writes its mask tokens (``{"sam_instance": "point v0=.. v1=.. polygon v0=.. v1=.. v2=.. v3=.."}``)."""
        single = isinstance(inputs, Mapping)
        batch: list[Mapping[str, Any]] = [inputs] if isinstance(inputs, Mapping) else list(inputs)
        results = self.pipeline.generate(
            batch,
            targets,
            schedule=schedule,
            seed=seed,
            steps=steps,
            temperature=temperature,
            top_p=top_p,
            ensemble=ensemble,
            constrain=constrain,
            prefix=prefix,
        )
        return results[0] if single else results

    # ------------------------------------------------------------------------------------------------ features
    def encode(self, inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Any:
        """The 4M encoder as a backbone (ml-4m's ``FMViT`` use): for ``inputs`` as :meth:`generate` takes them, an
        :class:`~fourm_core.inference.pipeline.Encoding` with ``tokens`` (B, N, D) after the encoder's final norm,
        ``mask`` (B, N, True = a real input token) and ``pooled`` (B, D), their mean over the valid tokens."""
        return self.pipeline.encode(inputs)

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
        return self.pipeline.retrieve(inputs, index, k, seed=seed, check_store=check_store)

    def __repr__(self) -> str:
        vocabulary = "yes" if self.vocabulary is not None else "no"
        return (
            f"FourM(preset={self.preset!r}, keys={len(self.keys)}, vocabulary={vocabulary}, "
            f"tokenizers={self.tokenizers!r})"
        )
