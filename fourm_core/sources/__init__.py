"""Data sources: the synthetic world (the embedded default) and photo folders, plus their store adapters.

Sources describe data, so they may name the ground-truth fields they provide; they never dispatch on modalities.
"""
