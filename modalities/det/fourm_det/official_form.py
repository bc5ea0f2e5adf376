"""ml-4m's file for boxes, and back: the ``det/<key>.json`` of its webdataset layout.

ml-4m's ``DetectionTransform.load`` reads ``{"instances": [{"boxes": [xmin, ymin, xmax, ymax], "class_name": str,
"score": float}, ...]}`` with coordinates normalised to the image (albumentations' format), and keeps the instances
scoring at least its ``det_threshold`` when it serialises them. fourm stores the same boxes as
``[{xmin, ymin, xmax, ymax, label, score}]`` (:data:`fourm_det.plugin.BOXES`); this converts between the two
without dropping anything (other keys of a record ride along on its instance, which ml-4m ignores), so a store
exported to ml-4m's layout and imported again holds equal boxes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DetFileForm", "FORM"]

_CORNERS = ("xmin", "ymin", "xmax", "ymax")
_OWN = {*_CORNERS, "label", "score"}
_THEIRS = {"boxes", "class_name", "score"}


class DetFileForm:
    """``to_official`` / ``from_official`` of the det plugin (``OfficialAssets.file_form``)."""

    def to_official(self, value: Any) -> dict[str, Any]:
        """fourm's box records to ml-4m's ``{"num_instances": n, "instances": [...]}``."""
        instances = [
            {
                "boxes": [float(box[c]) for c in _CORNERS],
                "class_name": str(box["label"]),
                "score": float(box.get("score", 1.0)),
                **{k: v for k, v in box.items() if k not in _OWN},  # e.g. the synthetic world's instance id
            }
            for box in value
        ]
        return {"num_instances": len(instances), "instances": instances}

    def from_official(self, obj: Any) -> list[dict[str, Any]]:
        """ml-4m's JSON to fourm's box records; a malformed one raises ValueError saying what was expected."""
        if not isinstance(obj, dict) or not isinstance(obj.get("instances"), list):
            raise ValueError('expected an object {"instances": [{"boxes": [4 numbers], "class_name", "score"}, ...]}')
        out = []
        for i, inst in enumerate(obj["instances"]):
            boxes = inst.get("boxes") if isinstance(inst, dict) else None
            if not (isinstance(boxes, list) and len(boxes) == 4 and all(isinstance(b, (int, float)) for b in boxes)):
                raise ValueError(f"instance {i}: expected 'boxes' as [xmin, ymin, xmax, ymax] numbers")
            if not isinstance(inst.get("class_name"), str):
                raise ValueError(f"instance {i}: expected a 'class_name' string")
            score = inst.get("score", 1.0)
            if not isinstance(score, (int, float)):
                raise ValueError(f"instance {i}: expected a numeric 'score'")
            extra = {k: v for k, v in inst.items() if k not in _THEIRS}
            out.append(
                {**dict(zip(_CORNERS, map(float, boxes))), "label": inst["class_name"], "score": float(score), **extra}
            )
        return out


#: the instance the plugin's ``OfficialAssets(file_form=...)`` names
FORM = DetFileForm()
