"""The key table inference works from, whatever the caller holds.

The sampler, the requests and the schedules ask typed questions about a model key (``info.is_sequence``,
``info.max_tokens``), never compare ``type`` strings. A network carries its :class:`~fourm_core.keys.KeyTable` as
``network.keys``; tests and ml-4m tooling may hold an official ``modality_info`` dict of dicts, converted here once,
at that boundary (:meth:`KeyTable.coerce`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fourm_core.keys import KeyTable

__all__ = ["key_table_of"]


def key_table_of(source: Any) -> KeyTable:
    """The key table of ``source``: a :class:`KeyTable` as is, a network's (or a pipeline's) ``keys``, or a
    ``{key: KeyInfo}`` / official ``modality_info`` mapping converted."""
    if isinstance(source, KeyTable):
        return source
    keys = getattr(source, "keys", None)
    if isinstance(keys, KeyTable):
        return keys
    if isinstance(source, Mapping):
        return KeyTable.coerce(source)
    info = getattr(source, "modality_info", None)
    if isinstance(info, Mapping):
        return KeyTable.coerce(info)
    raise TypeError(f"no key table in {type(source).__name__}: give a KeyTable, a network or its modality_info")
