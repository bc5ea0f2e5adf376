"""Zarr v3 aligned multimodal store (import ``fourm_core.storage.store``; zarr loads only then)."""
