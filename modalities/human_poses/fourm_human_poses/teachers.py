"""The paper's human-pose teacher, 4D-Humans (HMR 2.0), is not packaged: this labeler says so instead of guessing.

4M-21 pseudo-labels 3D human poses and shapes with 4D-Humans (``shubham-goel/4D-Humans``, package name ``hmr2``).
It is not on PyPI or the Hugging Face hub as a library model: it installs from its git repository, needs detectron2
(also not on PyPI) for its ViTDet person detector, and the SMPL body model files, which are behind a licence
registration and cannot be downloaded by a program. No maintained package offers an equivalent SMPL regressor, so
fourm registers this entry only so that ``fourm data label --plan`` names the teacher and why it cannot run
(``Python package 'hmr2' is not installed``); it never produces poses, fake or otherwise.
"""

from __future__ import annotations

from typing import Any

from fourm_core import plugin as fp

#: Why the paper's teacher does not run here, as the labeler's description and the error below say it.
WHY = (
    "4D-Humans (HMR 2.0, package 'hmr2') is not packaged: it installs from git, needs detectron2 and the "
    "licence-gated SMPL model files; no maintained package replaces it, so photos get no human poses"
)


def build(spec: fp.ModalitySpec, context: fp.LabelContext, **_: Any) -> Any:
    """Never returns a labeler: reached only if someone installed a package named ``hmr2``, which fourm does not
    drive (its API, detector and SMPL files are not wired up), so it fails with one line before any compute."""
    raise fp.TeacherUnavailable(
        f"{spec.name}: the 4D-Humans labeler is not implemented in fourm ({WHY}); label human poses from a source "
        f"that provides them (the synthetic world) or leave the modality out with --only"
    )
