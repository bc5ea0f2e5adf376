"""Conformance checks every modality plugin must pass, as plain functions.

The same checks back the pytest suite (``fourm_core.testing.conformance``) and ``fourm validate PLUGIN``, so a plugin
author sees identical verdicts in both places. Each check raises :class:`ConformanceError` with a message that names
the modality and says what was expected.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fourm_core.registry import Modality, Registry, resolve_ref
from fourm_core.serialization import SerializationError
from fourm_core.spec import PRESETS, MaskingUnit, ModalityKind, ModalitySpec, Vocabulary
from fourm_core.vocab import TextVocabulary, build_text_vocabulary

__all__ = [
    "CHECKS",
    "CheckResult",
    "ConformanceError",
    "check_serializer_example",
    "check_vocabulary_example",
    "conformance_vocabulary",
    "run_checks",
]

#: Examples drawn per serializer check; small enough to keep the suite fast, large enough to hit every branch.
EXAMPLES = 25


class ConformanceError(AssertionError):
    """A plugin does not meet the contract."""


def _fail(modality: Modality, message: str) -> ConformanceError:
    return ConformanceError(f"[{modality.name} from {modality.plugin.label}] {message}")


def check_spec(modality: Modality, registry: Registry) -> None:
    """The spec re-validates from its own dump, has every preset, unique storage names and a usable model key."""
    spec = modality.spec
    again = ModalitySpec.model_validate(json.loads(spec.model_dump_json()))
    if again != spec:
        raise _fail(modality, "spec does not survive a JSON round trip")
    for preset in PRESETS:
        key = modality.model_key(preset)
        if not 0 <= modality.id(preset) < 2**15:
            raise _fail(modality, f"id of {key!r} outside 0..32767")
        if registry.model_keys(preset)[key][0].spec.kind != spec.kind:
            raise _fail(modality, f"group members behind {key!r} disagree on kind")
    names = [a.name for a in spec.storage]
    if len(names) != len(set(names)):
        raise _fail(modality, f"storage array names repeat: {names}")
    if spec.kind == ModalityKind.SEQUENCE and registry.serializer_spec(spec.name) is None:
        raise _fail(modality, "a sequence modality needs a serializer (fourm_register_serializers)")


def check_parts(modality: Modality, registry: Registry) -> None:
    """Every lazily referenced part (serializer, labelers, tokenizer, decoders) imports and is callable."""
    refs: list[tuple[str, str]] = []
    if (ser := registry.serializer_spec(modality.name)) is not None:
        refs.append(("serializer", ser.factory))
    refs += [(f"labeler {lab.name}", lab.factory) for lab in registry.labelers(modality.name)]
    if (tok := registry.tokenizer_spec(modality.name)) is not None:
        refs.append(("tokenizer", tok.factory))
    refs += [(f"decoder {dec.name}", dec.factory) for dec in registry.decoders(modality.name)]
    for what, ref in refs:
        try:
            target = resolve_ref(ref)
        except Exception as exc:
            raise _fail(modality, f"{what} reference {ref!r} does not resolve: {exc!r}") from exc
        if not callable(target):
            raise _fail(modality, f"{what} reference {ref!r} is not callable")


def check_serializer(modality: Modality, registry: Registry) -> None:
    """Serializers round-trip exactly, read shuffled strings, and fail on garbage only with SerializationError."""
    if registry.serializer_spec(modality.name) is None:
        return
    ser = modality.serializer()
    for seed in range(EXAMPLES):
        check_serializer_example(modality, registry, seed, ser)
    for garbage in ("v0=1 v7=3 [S_1]", "polygon point human v3=999", "v1=999 v0=12 v0=13 v0=14"):
        try:
            ser.parse(garbage)
        except SerializationError:
            pass
        except Exception as exc:
            raise _fail(
                modality,
                f"parse({garbage!r}) raised {exc!r}; malformed input must raise SerializationError naming the modality",
            ) from exc


def check_serializer_example(modality: Modality, registry: Registry, seed: int, ser: Any = None) -> None:
    """The round-trip checks on the serializer's ``example(Random(seed))``: one case of :func:`check_serializer`,
    callable with any seed (the property tests draw them)."""
    ser = ser if ser is not None else modality.serializer()
    value = ser.example(random.Random(seed))
    text = ser.serialize(value)
    again = ser.serialize(ser.parse(text))
    if again != text:
        raise _fail(modality, f"serialize(parse(s)) != s for seed {seed}:\n  s      = {text!r}\n  again  = {again!r}")
    shuffled = ser.serialize(value, random.Random(seed + 1000))
    parsed = ser.parse(shuffled)
    if ser.parse(ser.serialize(parsed)) != parsed:
        raise _fail(modality, f"a shuffled string does not parse stably (seed {seed}): {shuffled!r}")
    if modality.spec.masking == MaskingUnit.CHUNK and text:
        chunks = registry.masking_chunks(modality.name, text)
        if " ".join(chunks) != text:
            raise _fail(modality, f"masking chunks do not reassemble the sequence: {chunks}")
        tags = {t for m in modality.group_members() for t in m.spec.chunk_tags}
        if any(c.split()[0] not in tags for c in chunks):
            raise _fail(modality, f"a chunk does not start with a declared chunk tag: {chunks}")


def check_vocabulary(modality: Modality, registry: Registry, text: TextVocabulary | None = None) -> None:
    """Serialized examples use only tokens of the shared vocabulary (no [UNK]) and fit the paper token budget."""
    spec = modality.spec
    if spec.vocabulary != Vocabulary.TEXT:
        return
    text = text or conformance_vocabulary(registry)
    for word in spec.vocab_words:
        if len(text.encode(word)) != 1:
            raise _fail(modality, f"vocab word {word!r} is not a single token: {text.tokens(word)}")
    if registry.serializer_spec(spec.name) is None:
        return
    ser = modality.serializer()
    for seed in range(EXAMPLES):
        check_vocabulary_example(modality, text, seed, ser)


def check_vocabulary_example(modality: Modality, text: TextVocabulary, seed: int, ser: Any = None) -> None:
    """The serializer's ``example(Random(seed))`` encodes without [UNK], inside ``text`` and within the paper token
    budget: one case of :func:`check_vocabulary`, callable with any seed."""
    ser = ser if ser is not None else modality.serializer()
    budget = modality.spec.layout("paper").max_tokens
    serialized = ser.serialize(ser.example(random.Random(seed)))
    ids = text.encode(serialized)
    if text.unk_id in ids:
        tokens = text.tokens(serialized)
        raise _fail(modality, f"[UNK] in {serialized!r}: {[t for t in tokens if t == '[UNK]'][:3]}")
    if ids and max(ids) >= text.size:
        raise _fail(modality, f"token id {max(ids)} outside the vocabulary of {text.size}")
    if len(ids) + 1 > budget:
        raise _fail(modality, f"example of {len(ids)} tokens + EOS exceeds max_tokens {budget}: {serialized!r}")


def check_lazy_import(modality: Modality, registry: Registry) -> None:
    """Importing the plugin's entry point module in a fresh interpreter imports no torch (listing stays fast)."""
    module = modality.plugin.module.partition(":")[0]
    code = (
        f"import importlib, sys; importlib.import_module({module!r}); print(sorted(m for m in ('torch', 'timm', "
        f"'deepspeed', 'zarr') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise _fail(modality, f"importing {module} failed: {out.stderr.strip().splitlines()[-1:]}")
    heavy = out.stdout.strip()
    if heavy != "[]":
        raise _fail(modality, f"importing {module} pulls in heavy modules {heavy}; move them into lazy parts")


def _check_grammar(modality: Modality, registry: Registry) -> None:
    """A sequence serializer's grammar (when it declares one) accepts what it writes, and what it allows parses."""
    from fourm_core.testing.grammar_conformance import check_grammar  # imports this module: import when run

    check_grammar(modality, registry, conformance_vocabulary(registry))


CHECKS: dict[str, Callable[[Modality, Registry], None]] = {
    "spec": check_spec,
    "parts": check_parts,
    "serializer": check_serializer,
    "vocabulary": check_vocabulary,
    "lazy_import": check_lazy_import,
    "grammar": _check_grammar,
}


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check on one modality."""

    modality: str
    check: str
    ok: bool
    message: str = ""


def run_checks(registry: Registry, names: Iterable[str], checks: Iterable[str] | None = None) -> list[CheckResult]:
    """Run the named checks (all by default) on the named modalities, collecting failures instead of stopping."""
    results = []
    for name in names:
        modality = registry.get(name)
        for check in checks or CHECKS:
            try:
                CHECKS[check](modality, registry)
            except Exception as exc:
                results.append(CheckResult(name, check, False, str(exc)))
            else:
                results.append(CheckResult(name, check, True))
    return results


def conformance_vocabulary(registry: Registry) -> TextVocabulary:
    """A text vocabulary trained on the registered serializers' examples with every plugin's whole words.

    Cached per registry; real runs use the vocabulary built by ``fourm vocab build``.
    """
    return _cached_vocabulary(id(registry), registry)


@lru_cache(maxsize=4)
def _cached_vocabulary(_key: int, registry: Registry) -> TextVocabulary:
    from fourm_core.vocab import plugin_vocab_words

    corpus = example_corpus(registry)
    words = [w for ws in plugin_vocab_words(registry).values() for w in ws]
    return build_text_vocabulary(corpus, words)


def example_corpus(registry: Registry, per_modality: int = 200, seed: int = 0) -> list[str]:
    """Serialized examples of every sequence modality (what a vocabulary must cover)."""
    corpus = []
    for modality in registry.modalities():
        if registry.serializer_spec(modality.name) is None:
            continue
        ser = modality.serializer()
        rng = random.Random(seed)
        corpus += [ser.serialize(ser.example(rng), rng) for _ in range(per_modality)]
    return corpus
