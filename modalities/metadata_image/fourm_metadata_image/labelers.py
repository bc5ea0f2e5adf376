"""Image-processing metadata from the RGB image, as the 4M-21 paper computes it (Pillow/OpenCV statistics)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fourm_core.plugin import LabelContext, ModalitySpec, SampleView


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003): ``sqrt(std_rg^2 + std_yb^2) + 0.3 * sqrt(mean_rg^2 + mean_yb^2)``."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def image_statistics(rgb: np.ndarray, original_size: tuple[int, int] | None) -> dict[str, float]:
    """Brightness and contrast (mean and std of luma), saturation (mean HSV S), entropy (bits of the luma histogram),
    colourfulness, and the original size when the source recorded it. Watermark and aesthetic scores need models
    and are left out."""
    import cv2

    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    hist = np.bincount(grey.ravel(), minlength=256).astype(np.float64)
    p = hist[hist > 0] / hist.sum()
    values = {
        "brightness": float(grey.mean()),
        "contrast": float(grey.std()),
        "saturation": float(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1].mean()),
        "entropy": float(-(p * np.log2(p)).sum()),
        "colorfulness": colorfulness(rgb),
    }
    if original_size is not None:
        values["original_width"], values["original_height"] = (int(v) for v in original_size)
    return values


class ImageMetadata:
    """Statistics of the rgb modality plus the source's original size."""

    version = "1"

    def label(self, sample: SampleView) -> dict[str, Any]:
        size = sample.source.get("original_size")
        return {
            "values": image_statistics(
                np.asarray(sample.get("rgb")["rgb"]), tuple(np.asarray(size).tolist()) if size is not None else None
            )
        }

    def dims(self) -> dict[str, int]:
        return {}

    def provenance(self) -> dict[str, Any]:
        return {
            "method": "luma/HSV statistics (OpenCV), Hasler-Suesstrunk colourfulness",
            "omitted": ["watermark_score", "aesthetic_score"],
        }


def image_metadata_labeler(spec: ModalitySpec, context: LabelContext) -> ImageMetadata:
    """Image-processing metadata."""
    return ImageMetadata()
