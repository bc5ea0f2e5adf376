"""OpenCV Canny edges of the RGB image (the paper's offline labeler for this modality)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fourm_core.plugin import LabelContext, ModalitySpec, SampleView


class Canny:
    """``cv2.Canny`` on the grey image after a light blur, thresholds set from the image's median (auto-Canny), so
    dark and bright images get comparable edge densities. Output 0/255 uint8."""

    version = "1"

    def __init__(self, sigma: float = 0.33, blur: int = 3) -> None:
        self.sigma, self.blur = sigma, blur

    def label(self, sample: SampleView) -> dict[str, Any]:
        import cv2

        rgb = np.ascontiguousarray(sample.get("rgb")["rgb"], dtype=np.uint8)
        grey = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (self.blur, self.blur), 0)
        median = float(np.median(grey))
        low, high = int(max(0, (1 - self.sigma) * median)), int(min(255, (1 + self.sigma) * median))
        return {"edges": cv2.Canny(grey, low, max(high, low + 1))}

    def dims(self) -> dict[str, int]:
        return {}

    def provenance(self) -> dict[str, Any]:
        return {"method": "cv2.Canny, median-based thresholds", "sigma": self.sigma, "blur": self.blur}


def canny_labeler(spec: ModalitySpec, context: LabelContext) -> Canny:
    """Auto-threshold Canny on the rgb modality."""
    return Canny()
