"""The synthetic world, fourm's embedded default data source: seeded procedural 3D scenes ray cast on the CPU.

``SyntheticWorld(WorldConfig(image_size=64), seed=0)[i]`` (or ``render_scene(seed, config)``) gives a
:class:`Scene` with aligned RGB, depth, normals, albedo, semantic and instance maps, boxes, human poses, a caption
and the scene graph. Modules: ``config`` (user settings), ``layout`` (scene types), ``objects`` (thing recipes),
``humans`` (articulated figures), ``geometry``/``raycast``/``camera`` (rendering), ``shading`` (materials and
light), ``caption``, ``classes`` (the COCO-panoptic table) and ``preview`` (a contact sheet for people).
"""

from fourm_core.sources.synthetic.config import WorldConfig
from fourm_core.sources.synthetic.world import Scene, SyntheticWorld, render_scene

__all__ = ["Scene", "SyntheticWorld", "WorldConfig", "render_scene"]
