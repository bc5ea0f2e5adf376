"""The synthetic world, fourm's embedded default data source (see :mod:`.world`)."""

from fourm_core.sources.synthetic.world import Scene, SyntheticWorld, WorldConfig, render_scene

__all__ = ["Scene", "SyntheticWorld", "WorldConfig", "render_scene"]
