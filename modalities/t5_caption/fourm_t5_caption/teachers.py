"""The T5-XXL caption encoder as a hub teacher: per-token embeddings of each sample's caption.

The paper embeds every caption with the T5-XXL encoder (``google/t5-v1_1-xxl``, d_model 4096) and stores the
encoder's last hidden state of each valid token (ml-4m keeps ``emb[mask_valid]``: the caption's tokens and the
closing ``</s>``, no padding), truncated to the preset's ``max_tokens`` (77 in the paper preset). This module loads
that encoder through transformers (``T5EncoderModel`` + the repo's tokenizer, safetensors only) from the Hugging Face
cache, batches captions with padding and an attention mask, and keeps the valid rows of each.

The encoder's width is a property of the weights, the stored width a property of the store's preset: they are
compared before any compute (:func:`width_problem`, also the factory's ``plan_check``), so a store whose preset
does not take 4096-d embeddings is refused with one line instead of failing at collation after a whole labeling run.

Without weights and only with ``allow_random_teachers``, the stand-in is a seeded random-init ``T5EncoderModel``
of the preset's width over a byte-level tokenizer built in memory (no files); provenance says ``random-init``.

torch and transformers are imported inside the functions that run the encoder, never at import.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fourm_core import plugin as fp

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

#: Where the caption text is read: this modality's array of that name.
CAPTION_MODALITY = "caption"
CAPTION_ARRAY = "text"
#: Special tokens of the byte-level stand-in tokenizer (T5's own ids: pad 0, eos 1, unk 2); bytes follow.
_SPECIALS = ("<pad>", "</s>", "<unk>")


def _feature_dim(spec: fp.ModalitySpec, preset: str) -> int:
    dim = spec.layout(preset).feature_dim
    if not dim:
        raise ValueError(f"modality {spec.name!r} declares no feature_dim for preset {preset!r}")
    return int(dim)


def width_problem(
    spec: fp.ModalitySpec, context: fp.LabelContext, model: fp.HubModel | Mapping[str, Any], width: int
) -> str | None:
    """Why the teacher's weights cannot label this store (one line), or None: real weights must give the preset's
    stored width; the random-init stand-in is built at that width, so it always fits (and missing weights are
    reported as such by the hub requirement, not here)."""
    hub = model if isinstance(model, fp.HubModel) else fp.HubModel.model_validate(model)
    status, _ = fp.teacher_status(hub, context.options)
    if status in ("random", "missing"):
        return None
    stored = _feature_dim(spec, context.preset)
    if int(width) == stored:
        return None
    return (
        f"teacher {hub.model_id} gives {width}-d token embeddings, but preset {context.preset!r} stores {stored}-d "
        f"{spec.name} embeddings; label a store of a preset whose {spec.name} feature_dim is {width} (the paper "
        f"preset), or name the offline stand-in (--labeler {spec.name}=minilm)"
    )


def tokenizer_problem(path: Path | None) -> str | None:
    """Why the snapshot's tokenizer cannot be loaded here, or None. ``google/t5-v1_1-xxl`` ships ``spiece.model``
    only (no ``tokenizer.json``); transformers converts it with the sentencepiece and protobuf packages."""
    if path is None or (path / "tokenizer.json").is_file():
        return None
    missing = [p for p, m in (("sentencepiece", "sentencepiece"), ("protobuf", "google.protobuf")) if not _has(m)]
    if not missing:
        return None
    return (
        f"the T5 snapshot {path} has no tokenizer.json, and converting its spiece.model needs the Python packages "
        f"{' and '.join(missing)} (`pip install sentencepiece protobuf`)"
    )


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def byte_tokenizer() -> Any:
    """A T5-style tokenizer over UTF-8 bytes (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, then the 256 bytes; ``</s>``
    closes every caption), built in memory with the tokenizers library: the random-init stand-in's, needing no files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(_SPECIALS)}
    vocab.update({c: len(_SPECIALS) + i for i, c in enumerate(alphabet)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


class T5CaptionTeacher(fp.HubTeacher):
    """Per-token T5 encoder embeddings ``(L, C)`` float16 of each sample's caption (see the module docstring)."""

    version = "1"

    def __init__(
        self,
        spec: fp.ModalitySpec,
        context: fp.LabelContext,
        model: fp.HubModel | Mapping[str, Any],
        width: int,
        batch_size: int = 16,
    ) -> None:
        problem = width_problem(spec, context, model, width)
        if problem:
            raise fp.TeacherUnavailable(problem)
        # the text teacher has no image: the base's resolution is the token budget, reported as max_tokens
        self.max_tokens = int(spec.layout(context.preset).max_tokens or 0)
        if self.max_tokens <= 0:
            raise ValueError(f"modality {spec.name!r} declares no max_tokens for preset {context.preset!r}")
        super().__init__(spec, context, model, resolution=self.max_tokens, batch_size=batch_size)
        problem = tokenizer_problem(self.path)
        if problem:
            raise fp.TeacherUnavailable(f"teacher {self.model_id}: {problem}")
        self.width = int(width) if not self.random_init else _feature_dim(spec, context.preset)
        self.tokenizer: Any = None

    # -- the network ---------------------------------------------------------------------------------------------

    def build(self, path: Path | None) -> Any:
        """``T5EncoderModel`` and its tokenizer from the snapshot (safetensors), or the random-init stand-in."""
        from transformers import AutoTokenizer, T5Config, T5EncoderModel
        from transformers.utils import logging

        logging.disable_progress_bar()
        logging.set_verbosity_error()
        if path is None:
            self.tokenizer = byte_tokenizer()
            config = T5Config(
                vocab_size=len(self.tokenizer),
                d_model=self.width,
                d_kv=32,
                d_ff=4 * 64,
                num_layers=2,
                num_heads=4,
                feed_forward_proj="gated-gelu",
                is_encoder_decoder=False,
            )
            return T5EncoderModel(config)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        net = T5EncoderModel.from_pretrained(str(path), use_safetensors=True, local_files_only=True)
        if int(net.config.d_model) != self.width:
            raise fp.TeacherUnavailable(
                f"teacher {self.model_id}: its config says d_model {net.config.d_model}, the plugin declares "
                f"{self.width}; the snapshot {path} is not the declared encoder"
            )
        return net

    # -- labeling ------------------------------------------------------------------------------------------------

    def _text(self, sample: fp.SampleView) -> str:
        text = sample.get(CAPTION_MODALITY).get(CAPTION_ARRAY)
        if not isinstance(text, str) or not text.strip():
            raise fp.LabelError(f"sample {sample.index}: expected a non-empty caption text, got {text!r}")
        return text

    def label_batch(self, samples: Sequence[fp.SampleView]) -> list[dict[str, Any] | fp.LabelError]:
        """Captions in batches of ``batch_size`` (padded, attention-masked); each keeps its valid token rows. A
        sample without a caption, or whose embedding is not finite (fp16 overflow: use bf16), fails alone."""
        out: list[dict[str, Any] | fp.LabelError | None] = [None] * len(samples)
        ready: list[tuple[int, str]] = []
        for i, sample in enumerate(samples):
            try:
                ready.append((i, self._text(sample)))
            except fp.LabelError as exc:
                out[i] = exc
        for start in range(0, len(ready), self.batch_size):
            chunk = ready[start : start + self.batch_size]
            for (i, _), value in zip(chunk, self._encode([t for _, t in chunk]), strict=True):
                if isinstance(value, fp.LabelError):
                    out[i] = fp.LabelError(f"sample {samples[i].index}: {value}")
                else:
                    out[i] = {"embedding": value}
        return out  # type: ignore[return-value]

    def _encode(self, texts: list[str]) -> list[np.ndarray | fp.LabelError]:
        import numpy as np

        network = self.network  # builds the tokenizer too
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_tokens, padding=True, return_tensors="pt")
        ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
        with self.compute():
            hidden = network(input_ids=ids, attention_mask=mask).last_hidden_state
        hidden = hidden.float().cpu().numpy()
        lengths = mask.sum(dim=1).tolist()
        values: list[np.ndarray | fp.LabelError] = []
        for k, n in enumerate(lengths):
            rows = hidden[k, : int(n)]
            if n == 0:
                values.append(fp.LabelError("the caption gives no tokens"))
            elif not np.isfinite(rows).all() or np.abs(rows).max() > np.finfo(np.float16).max:
                values.append(fp.LabelError(f"non-finite or fp16-overflowing T5 embedding in {self.dtype}; use bf16"))
            else:
                values.append(rows.astype(np.float16))
        return values

    def infer(self, batch: Any, samples: Sequence[fp.SampleView]) -> list[dict[str, Any] | fp.LabelError]:
        raise NotImplementedError("the text teacher labels through label_batch, without images")

    def dims(self) -> dict[str, int]:
        return {"C": self.width}

    def provenance(self) -> dict[str, Any]:
        prov = super().provenance()
        prov.pop("resolution", None)  # no image: the token budget is max_tokens
        return prov

    def extra_provenance(self) -> dict[str, Any]:
        return {
            "encoder": "T5EncoderModel" + (" (byte-level stand-in tokenizer)" if self.random_init else ""),
            "dim": self.width,
            "max_tokens": self.max_tokens,
            "output": "last hidden state of every valid token (the caption's tokens and </s>), no padding",
            "text_preprocessing": "none (as the paper: captions as given)",
        }


def build(
    spec: fp.ModalitySpec, context: fp.LabelContext, model: Mapping[str, Any], width: int, batch_size: int = 16
) -> T5CaptionTeacher:
    """The labeler factory ``fp.teacher_labeler`` names: the T5 teacher, after the width check."""
    return T5CaptionTeacher(spec, context, model, width=width, batch_size=batch_size)


def plan_check(context: fp.LabelContext, *, model: Mapping[str, Any], width: int, **_: Any) -> tuple[str, str, str]:
    """Before any compute: ``(status, reason, model id)`` as the label plan reads it; ``missing`` when the weights
    cannot be had or their width does not fit the store's preset."""
    hub = fp.HubModel.model_validate(model)
    status, reason = fp.teacher_status(hub, context.options)
    spec = context.modalities.get("t5_caption")
    if status != "missing" and spec is not None:
        problem = width_problem(spec, context, hub, width)
        if problem:
            return "missing", problem, hub.model_id
    return status, reason, hub.model_id


build.plan_check = plan_check  # type: ignore[attr-defined]
