"""Captions for photos that come without one: BLIP, an image captioner through transformers, as a hub teacher.

4M-21 trains on CC12M / COYO alt-text captions, so the paper has no caption teacher; a folder of photos usually has
no captions at all. This labeler keeps a photo's sidecar caption whenever the source gives a non-empty one (sidecar
captions have priority) and generates the others with ``Salesforce/blip-image-captioning-large``
(``BlipForConditionalGeneration`` + ``BlipProcessor``, safetensors only), decoding as the BLIP authors' captioning
demo does (beam search, 3 beams, length 5..20 tokens). The provenance says that captions are generated, by which
model, and that sidecars win; the model is only built when a block has a photo without a sidecar.

Without weights and only with ``allow_random_teachers``, the stand-in is a seeded random-init BLIP of a small config
over a tiny WordPiece vocabulary built in memory; its captions are noise and its provenance says ``random-init``.

torch and transformers are imported inside the functions that run the model, never at import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fourm_core import plugin as fp

#: The tiny stand-in's vocabulary: BERT's special tokens, BLIP's [DEC] (the decoder's start token), a few words.
_STAND_IN_WORDS = (
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "[DEC]",
    *"a an the of on in with and photo picture of person people dog cat car tree sky water table room".split(),
)


def stand_in_processor(resolution: int) -> Any:
    """A ``BlipProcessor`` over a tiny in-memory WordPiece vocabulary (tokenizers library) and BLIP's image
    normalisation: the random-init stand-in's, needing no files."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import BertTokenizerFast, BlipImageProcessor, BlipProcessor

    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(_STAND_IN_WORDS)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tokenizer = BertTokenizerFast(
        tokenizer_object=tok,
        bos_token="[DEC]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    images = BlipImageProcessor(size={"height": resolution, "width": resolution})
    return BlipProcessor(image_processor=images, tokenizer=tokenizer)


class BlipCaptioner(fp.HubTeacher):
    """The source's caption when it has one, else a BLIP caption of the photo (see the module docstring)."""

    version = "1"

    def __init__(
        self,
        spec: fp.ModalitySpec,
        context: fp.LabelContext,
        model: fp.HubModel | Mapping[str, Any],
        resolution: int = 384,
        batch_size: int = 8,
        *,
        sidecar_field: str = "caption",
        num_beams: int = 3,
        max_length: int = 20,
        min_length: int = 5,
    ) -> None:
        super().__init__(spec, context, model, resolution=resolution, batch_size=batch_size)
        self.sidecar_field = sidecar_field
        self.generation = {"num_beams": int(num_beams), "max_length": int(max_length), "min_length": int(min_length)}
        self.processor: Any = None
        self._norm: Any = None

    # -- the network ---------------------------------------------------------------------------------------------

    def build(self, path: Path | None) -> Any:
        """``BlipForConditionalGeneration`` and its ``BlipProcessor`` from the snapshot, or the stand-in."""
        from transformers import BlipConfig, BlipForConditionalGeneration, BlipProcessor
        from transformers.utils import logging

        logging.disable_progress_bar()
        logging.set_verbosity_error()
        if path is None:
            self.processor = stand_in_processor(self.resolution)
            text = {
                "vocab_size": len(_STAND_IN_WORDS),
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "max_position_embeddings": 64,
                "bos_token_id": _STAND_IN_WORDS.index("[DEC]"),
                "pad_token_id": 0,
                "sep_token_id": _STAND_IN_WORDS.index("[SEP]"),
                "eos_token_id": _STAND_IN_WORDS.index("[SEP]"),
            }
            vision = {
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "image_size": self.resolution,
                "patch_size": max(1, self.resolution // 8),
            }
            config = BlipConfig(text_config=text, vision_config=vision, projection_dim=32, image_text_hidden_size=32)
            return BlipForConditionalGeneration(config)
        self.processor = BlipProcessor.from_pretrained(str(path), local_files_only=True)
        net = BlipForConditionalGeneration.from_pretrained(str(path), use_safetensors=True, local_files_only=True)
        size = int(net.config.vision_config.image_size)
        if size != self.resolution:
            raise fp.TeacherUnavailable(
                f"teacher {self.model_id} takes {size} px images, the labeler is declared at {self.resolution} px"
            )
        return net

    def _normalise(self, batch: Any) -> Any:
        import torch

        if self._norm is None:
            proc = self.processor.image_processor
            mean = torch.tensor(proc.image_mean, device=batch.device).view(1, 3, 1, 1)
            std = torch.tensor(proc.image_std, device=batch.device).view(1, 3, 1, 1)
            self._norm = (mean, std)
        mean, std = self._norm
        return ((batch - mean.to(batch.dtype)) / std.to(batch.dtype)).to(batch.dtype)

    # -- labeling ------------------------------------------------------------------------------------------------

    def _sidecar(self, sample: fp.SampleView) -> str | None:
        value = sample.source.get(self.sidecar_field)
        return value.strip() if isinstance(value, str) and value.strip() else None

    def label_batch(self, samples: Sequence[fp.SampleView]) -> list[dict[str, Any] | fp.LabelError]:
        """Sidecar captions copied as they are; the other samples captioned by the model, in batches."""
        out: list[dict[str, Any] | fp.LabelError | None] = [None] * len(samples)
        todo: list[int] = []
        for i, sample in enumerate(samples):
            text = self._sidecar(sample)
            if text is None:
                todo.append(i)
            else:
                out[i] = {"text": text}
        if todo:
            for i, value in zip(todo, super().label_batch([samples[i] for i in todo]), strict=True):
                out[i] = value
        return out  # type: ignore[return-value]

    def infer(self, batch: Any, samples: Sequence[fp.SampleView]) -> list[dict[str, Any] | fp.LabelError]:
        """BLIP captions of a (B, 3, S, S) batch in [0, 1]: normalised with the processor's mean / std (the base
        already resized each image once, bicubic), beam-searched, decoded without special tokens."""
        network = self.network
        ids = network.generate(pixel_values=self._normalise(batch), **self.generation)
        texts = self.processor.batch_decode(ids, skip_special_tokens=True)
        out: list[dict[str, Any] | fp.LabelError] = []
        for sample, text in zip(samples, texts, strict=True):
            text = " ".join(str(text).split())
            out.append({"text": text} if text else fp.LabelError(f"sample {sample.index}: the captioner gave ''"))
        return out

    def extra_provenance(self) -> dict[str, Any]:
        return {
            "method": (
                f"the source's {self.sidecar_field!r} (sidecar caption) when non-empty, else generated by "
                f"{self.model_id}"
            ),
            "generated": True,
            "generated_by": self.model_id,
            "sidecar_priority": True,
            "generation": dict(self.generation, decoding="beam search"),
            "normalisation": "BlipProcessor image_mean / image_std after a bicubic resize",
        }


def build(spec: fp.ModalitySpec, context: fp.LabelContext, model: Mapping[str, Any], **options: Any) -> BlipCaptioner:
    """The labeler factory ``fp.teacher_labeler`` names."""
    return BlipCaptioner(spec, context, model, **options)
