"""Data sources: where samples come from, behind one protocol (:mod:`fourm_core.sources.protocol`).

The built-in ones, the synthetic world (the embedded default) and photo folders, are registered through
``fourm_register_sources`` (:mod:`fourm_core.sources.plugin`) like a plugin's, with their store adapters in
:mod:`fourm_core.sources.adapters`. Sources describe data, so they may name the ground-truth fields they provide; they
never dispatch on modalities.
"""
