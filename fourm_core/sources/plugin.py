"""The built-in data sources, registered through ``fourm_register_sources`` like any third party's.

This module is the ``builtin_sources`` entry point of the ``fourm.modalities`` group (see ``pyproject.toml``), so
``fourm data`` discovers the synthetic world and photo folders exactly as it discovers a plugin's dataset format, and
``FOURM_DISABLE_PLUGINS=builtin_sources`` removes them like any plugin. It imports only the plugin surface
(:mod:`fourm_core.plugin`), as a third party's would; the factories are references, resolved when a command builds
the source.
"""

from __future__ import annotations

from collections.abc import Callable

from fourm_core.plugin import CONTRACT_VERSION, SourceSpec, hookimpl

FOURM_CONTRACT = CONTRACT_VERSION  # shipped with the core: always built for the contract it implements

SOURCES = (
    SourceSpec(
        name="synthetic_world",
        factory="fourm_core.sources.adapters:SyntheticSource.from_settings",
        provides=("rgb", "depth", "normal", "albedo", "semseg", "det", "sam_instance", "human_poses", "caption"),
        description="procedural 3D scenes rendered with exact ground truth (--n scenes from --seed; --option sets "
        "WorldConfig fields such as humans=[1,3])",
    ),
    SourceSpec(
        name="image_folder",
        factory="fourm_core.sources.adapters:PhotoSource.from_settings",
        provides=("rgb", "sidecar_caption"),
        description="a folder of photos with optional sidecar .txt captions (--option sets ImageFolderConfig fields "
        "such as crop=pad)",
    ),
)


@hookimpl
def fourm_register_sources(register: Callable[[SourceSpec], None]) -> None:
    """The synthetic world and photo folders."""
    for spec in SOURCES:
        register(spec)
