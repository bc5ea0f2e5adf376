"""The box teacher for photos: D-FINE-X (Objects365 pre-training, COCO fine-tuning) through transformers.

4M-21 pseudo-labels boxes with a COCO ViTDet-H (Cascade, MAE-initialised); no maintained package in this environment
loads it (detectron2 is not a maintained pip package and its weights are pickles). The strongest COCO detector that
transformers 5.25 loads from safetensors is D-FINE-X pre-trained on Objects365 and fine-tuned on COCO
(``ustc-community/dfine-xlarge-obj2coco``, :class:`transformers.DFineForObjectDetection`, 59.3 box AP on COCO val,
against ViTDet-H's ~60-61); RT-DETRv2, Deformable DETR, DETR and LW-DETR are weaker, RF-DETR's strongest sizes are not
published for transformers, and DEIMv2's largest scores below D-FINE-X obj2coco.

D-FINE's own preprocessing is a plain resize to 640 x 640 and a rescale to [0, 1] (no mean / std), so the square
``resolution``-pixel image the base hands over is its input as is; box coordinates are fractions of the picture, the
same on the square store image. Post-processing is transformers' ``post_process_object_detection`` for D-FINE:
sigmoid class scores, the top ``num_queries`` (query, class) pairs, ``cx cy w h`` to corners. Boxes scoring at least
``min_score`` (0.6, the det string's threshold, as in ml-4m) are stored as ``{xmin, ymin, xmax, ymax, label, score}``
with the checkpoint's class names matched to the 80 COCO names this plugin's vocabulary holds.

torch and transformers are imported here only; the plugin module stays torch-free.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fourm_core import plugin as fp
from fourm_det.classes import COCO_CLASSES

__all__ = ["DFineTeacher", "build", "class_names", "tiny_config"]

#: Names some checkpoints spell differently from COCO's own spelling (PASCAL-style and older DETR configs).
ALIASES = {
    "tvmonitor": "tv",
    "tv monitor": "tv",
    "sofa": "couch",
    "diningtable": "dining table",
    "motorbike": "motorcycle",
    "aeroplane": "airplane",
    "pottedplant": "potted plant",
    "hair dryer": "hair drier",
}
#: Placeholder labels of checkpoints that keep COCO's 91 sparse ids (never predicted as objects).
PLACEHOLDERS = {"n/a", "background", "__background__", "no object"}


def _norm(name: str) -> str:
    text = " ".join(str(name).replace("_", " ").lower().split())
    return ALIASES.get(text, text)


def class_names(id2label: Mapping[int | str, str], classes: Sequence[str] = COCO_CLASSES) -> dict[int, str]:
    """``model class id -> COCO class name`` (as this plugin spells it) for the checkpoint's labels.

    Placeholders (``N/A``) are left out; a label matching no COCO class raises ValueError naming it, so a detector
    with another label space (Objects365, LVIS) is refused instead of writing wrong names.
    """
    known = {_norm(c): c for c in classes}
    out, unknown = {}, []
    for k, name in id2label.items():
        if _norm(name) in PLACEHOLDERS:
            continue
        if _norm(name) in known:
            out[int(k)] = known[_norm(name)]
        else:
            unknown.append(name)
    if unknown or not out:
        raise ValueError(
            f"the teacher's classes are not COCO's: {len(unknown)} labels match none of the {len(classes)} COCO "
            f"classes (first: {unknown[:5]})"
        )
    return out


def tiny_config(num_labels: int = len(COCO_CLASSES)) -> Any:
    """A small :class:`~transformers.DFineConfig` (HGNetV2 backbone) with the COCO class names: the random-init
    teacher (``--allow-random-teachers`` without weights) and the tests' tiny checkpoint. Built offline."""
    from transformers import DFineConfig, HGNetV2Config

    backbone = HGNetV2Config(
        embedding_size=8,
        depths=[1, 1, 1, 1],
        hidden_sizes=[16, 32, 64, 128],
        stem_channels=[3, 8, 8],
        stage_in_channels=[8, 16, 32, 64],
        stage_mid_channels=[8, 8, 16, 16],
        stage_out_channels=[16, 32, 64, 128],
        stage_num_blocks=[1, 1, 1, 1],
        stage_numb_of_layers=[1, 1, 1, 1],
        out_indices=[2, 3, 4],
    )
    return DFineConfig(
        backbone_config=backbone,
        encoder_hidden_dim=16,
        encoder_in_channels=[32, 64, 128],
        encoder_ffn_dim=32,
        encoder_attention_heads=2,
        d_model=16,
        num_queries=20,
        decoder_in_channels=[16, 16, 16],
        decoder_ffn_dim=32,
        decoder_layers=2,
        decoder_attention_heads=2,
        num_denoising=0,
        lqe_hidden_dim=8,
        hidden_expansion=0.5,
        depth_mult=0.34,
        num_labels=num_labels,
        id2label=dict(enumerate(COCO_CLASSES[:num_labels])),
        label2id={c: i for i, c in enumerate(COCO_CLASSES[:num_labels])},
    )


def _normalisation(path: Path | None) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """Mean / std when the checkpoint's ``preprocessor_config.json`` normalises (D-FINE's does not): else None."""
    config = path / "preprocessor_config.json" if path is not None else None
    if config is None or not config.is_file():
        return None
    data = json.loads(config.read_text())
    if not data.get("do_normalize", False):
        return None
    return tuple(data["image_mean"]), tuple(data["image_std"])


def boxes_from_outputs(
    logits: torch.Tensor, pred_boxes: torch.Tensor, names: Mapping[int, str], min_score: float
) -> list[list[dict[str, Any]]]:
    """Per image, the boxes scoring at least ``min_score``, best first: sigmoid scores over (query, class) pairs,
    the top ``num_queries`` kept (transformers' D-FINE post-processing), ``cx cy w h`` to clipped corners."""
    scores = logits.float().sigmoid()
    b, q, c = scores.shape
    top, index = scores.flatten(1).topk(q, dim=1)
    labels = index % c
    boxes = pred_boxes.float().gather(1, (index // c).unsqueeze(-1).expand(-1, -1, 4))
    cx, cy, w, h = boxes.unbind(-1)
    corners = torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), -1).clamp(0.0, 1.0)
    out = []
    for i in range(b):
        keep = top[i] >= min_score
        records = []
        for score, label, (x0, y0, x1, y1) in zip(
            top[i][keep].tolist(), labels[i][keep].tolist(), corners[i][keep].tolist()
        ):
            if label not in names:
                continue
            records.append(
                {"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1, "label": names[label], "score": round(score, 4)}
            )
        out.append(records)
    return out


class DFineTeacher(fp.HubTeacher):
    """COCO boxes (``[{xmin, ymin, xmax, ymax, label, score}]``, coordinates 0..1) from a D-FINE checkpoint."""

    version = "1"

    def __init__(
        self, spec: fp.ModalitySpec, context: fp.LabelContext, *, min_score: float = 0.6, **options: Any
    ) -> None:
        super().__init__(spec, context, **options)
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score {min_score} must be in [0, 1]")
        self.min_score = float(min_score)
        self.names: dict[int, str] = {}
        self.normalisation = _normalisation(self.path)

    def build(self, path: Path | None) -> torch.nn.Module:
        """The checkpoint (safetensors only), or the tiny config's random-init network (the base seeds it)."""
        from transformers import DFineForObjectDetection

        if path is None:
            model = DFineForObjectDetection(tiny_config())
        else:
            model = DFineForObjectDetection.from_pretrained(path, use_safetensors=True)
        self.names = class_names(model.config.id2label)
        return model

    def infer(self, batch: torch.Tensor, samples: Sequence[fp.SampleView]) -> list[dict[str, Any]]:
        """The batch through D-FINE, then :func:`boxes_from_outputs`."""
        x = batch
        if self.normalisation is not None:
            mean, std = (torch.tensor(v, device=x.device, dtype=x.dtype).view(1, 3, 1, 1) for v in self.normalisation)
            x = (x - mean) / std
        out = self.network(pixel_values=x)
        return [{"boxes": r} for r in boxes_from_outputs(out.logits, out.pred_boxes, self.names, self.min_score)]

    def extra_provenance(self) -> dict[str, Any]:
        """Threshold, post-processing and class space of the stored boxes."""
        return {
            "min_score": self.min_score,
            "postprocess": "sigmoid scores, top num_queries (query, class) pairs, cxcywh to clipped corners",
            "normalisation": "none (rescale to [0, 1])"
            if self.normalisation is None
            else {"mean": list(self.normalisation[0]), "std": list(self.normalisation[1])},
            "classes": f"COCO ({len(COCO_CLASSES)}), matched by name",
        }


def build(spec: fp.ModalitySpec, context: fp.LabelContext, **options: Any) -> DFineTeacher:
    """The labeler factory ``fp.teacher_labeler`` names: the HubModel, resolution, batch size and ``min_score``."""
    return DFineTeacher(spec, context, **options)
