"""fourm: any-to-any multimodal masked models (4M-21 style) in which every modality is a plugin.

Importing ``fourm_core`` is light (no torch): the registry, specs and vocabulary load on demand.

    from fourm_core import registry
    registry.get("depth").model_key("paper")   # 'tok_depth@224'
"""

from __future__ import annotations

__version__ = "0.1.0"
