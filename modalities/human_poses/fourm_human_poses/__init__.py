"""fourm modality plugin ``human_poses``.

3D human poses (SMPL-style pose, shape, camera, box) in the official string format.
"""

__version__ = "0.1.0"
