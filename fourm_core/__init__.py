"""fourm: any-to-any multimodal masked models (4M-21 style) in which every modality is a plugin.

Importing ``fourm_core`` is light (no torch): the registry, specs and vocabulary load on demand, and so does the
model API::

    import fourm_core as fm
    model = fm.FourM.from_pretrained("runs/tiny")
    out = model.generate({"rgb": image}, targets=["depth", "caption"])

    from fourm_core import registry
    registry.get("depth").model_key("paper")   # 'tok_depth@224'
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

#: names served lazily from submodules (so ``import fourm_core`` does not import torch)
_LAZY = {"FourM": "fourm_core.inference.api", "Registry": "fourm_core.registry"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fourm_core' has no attribute {name!r}")
