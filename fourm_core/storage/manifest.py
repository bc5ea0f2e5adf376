"""Which manifest a store is compared against, so the commands that made a store can always resume and repair it.

A store records the manifest it was built with (modality ids, token counts, plugin versions and, once built, the
text vocabulary's fingerprint). The installed plugins give the rest of the expected manifest, but not the text
vocabulary: that is a file the store's maker chose (the demo builds one from the store's captions). So the expected
vocabulary is the one the store records, unless the caller gives one explicitly, and a different one given
explicitly is refused naming both. Plugin versions that differ are notes, not errors: ids and sizes decide
compatibility (:meth:`~fourm_core.vocab.VocabularyManifest.diff`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fourm_core.spec import Vocabulary
from fourm_core.storage.integrity import StoreMismatchError

if TYPE_CHECKING:
    from fourm_core.registry import Registry
    from fourm_core.storage.store import AlignedStore
    from fourm_core.vocab import TextVocabulary, VocabularyManifest

__all__ = ["expected_manifest", "manifest_report", "require_manifest"]


def _stored(store: AlignedStore) -> VocabularyManifest | None:
    from fourm_core.vocab import VocabularyManifest

    raw = store.root.attrs.get("manifest")
    return None if raw is None else VocabularyManifest.model_validate(raw)


def expected_manifest(store: AlignedStore, registry: Registry, text: TextVocabulary | None = None) -> Any:
    """The manifest ``store`` should record given the installed plugins: with ``text`` when given, else with the
    text vocabulary the store records (and the text modalities' sizes that follow from it)."""
    from fourm_core.vocab import build_manifest

    expected = build_manifest(registry, store.preset, text)
    stored = _stored(store)
    if stored is None or text is not None:
        return expected
    modalities = {
        key: entry.model_copy(update={"vocab_size": stored.modalities[key].vocab_size})
        if entry.vocabulary == Vocabulary.TEXT.value and key in stored.modalities
        else entry
        for key, entry in expected.modalities.items()
    }
    return expected.model_copy(update={"text_vocabulary": dict(stored.text_vocabulary), "modalities": modalities})


def manifest_report(
    store: AlignedStore, registry: Registry, text: TextVocabulary | None = None
) -> tuple[list[str], list[str]]:
    """``(differences, notes)`` between what ``store`` records and the installed plugins: differences make them
    incompatible (ids, sizes, modalities, vocabulary); notes are plugin versions that changed."""
    stored = _stored(store)
    if stored is None:
        return [], []
    expected = expected_manifest(store, registry, text)
    differences = []
    given, recorded = (text.fingerprint if text else None), stored.text_vocabulary.get("sha256")
    if given is not None and recorded is not None and given != recorded:
        differences.append(
            f"the store records text vocabulary {stored.text_vocabulary.get('source')} (sha256 {str(recorded)[:12]}), "
            f"but {text.source if text else None} (sha256 {given[:12]}) was given"
        )
        expected = expected.model_copy(update={"text_vocabulary": dict(stored.text_vocabulary)})
    differences += stored.diff(expected, here="the store", there="the installed plugins")
    notes = [
        f"{key}: provided by {', '.join(entry.providers)} in the store, "
        f"{', '.join(expected.modalities[key].providers)} installed"
        for key, entry in sorted(stored.modalities.items())
        if key in expected.modalities and entry.providers != expected.modalities[key].providers
    ]
    return differences, notes


def require_manifest(store: AlignedStore, registry: Registry, text: TextVocabulary | None = None) -> list[str]:
    """Raise :class:`StoreMismatchError` (one line naming every difference) when ``store`` does not fit the installed
    plugins (or the vocabulary given); returns the notes (plugin versions that changed) for the caller to show."""
    differences, notes = manifest_report(store, registry, text)
    if differences:
        raise StoreMismatchError(
            f"{store.url} was built with different plugins or vocabulary: {'; '.join(differences)}"
        )
    return notes
