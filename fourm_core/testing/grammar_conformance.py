"""The grammar contract of sequence serializers (:class:`~fourm_core.serialization.HasGrammar`), checked both ways.

A grammar that refuses a string the serializer writes would stop a model from writing its training targets; one that
allows a string the parser refuses would make constrained decoding fail exactly where it promises not to. So, for a
serializer with a grammar over a text vocabulary:

(a) every string ``serialize`` writes for ``example(Random(seed))`` values (canonical and shuffled), encoded by the
    vocabulary, is accepted token by token and may end there;
(b) random walks through the grammar (each step a uniform choice among the allowed ids, within the key's token
    budget, until ``[EOS]``) always end with ``[EOS]`` inside the budget, and their text, decoded exactly as generation
    decodes it, parses.

Group keys (several plugins behind one model key) are checked through the group's serializer as well. Used by the
conformance suite (:mod:`fourm_core.testing.conformance`) on every installed plugin and by fourm's own tests.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from fourm_core.registry import Modality, Registry
from fourm_core.serialization import HasGrammar
from fourm_core.testing.checks import EXAMPLES, ConformanceError
from fourm_core.vocab import TextVocabulary

__all__ = ["WALKS", "check_grammar", "check_serializer_grammar", "decoded_text", "random_walk"]

#: Random walks per grammar: enough to reach every branch of the shipped formats, cheap (< 0.1 s each).
WALKS = 40


def decoded_text(vocab: TextVocabulary, ids: list[int]) -> str:
    """The text of generated ``ids`` as :func:`fourm_core.inference.outputs` decodes it (whitespace normalised)."""
    return " ".join(vocab.decode(ids).split()) if ids else ""


def random_walk(grammar: Any, budget: int, rng: random.Random) -> tuple[list[int], bool]:
    """Ids of one uniform random walk through ``grammar`` with ``budget`` ids (``[EOS]`` included) and whether it
    ended with ``[EOS]`` (which is not returned among the ids)."""
    state, ids = grammar.start(), list[int]()
    while len(ids) < budget:
        allowed = np.flatnonzero(grammar.allowed(state, remaining=budget - len(ids)))
        if len(allowed) == 0:
            return ids, False
        token = int(allowed[rng.randrange(len(allowed))])
        if token == grammar.eos_id:
            return ids, True
        state = grammar.advance(state, token)
        ids.append(token)
    return ids, False


def check_serializer_grammar(
    serializer: Any, vocab: TextVocabulary, budget: int, where: str, walks: int = WALKS, examples: int = EXAMPLES
) -> bool:
    """Both directions of the contract for one serializer (``where`` starts every error message); ``False`` when
    the serializer has no grammar (nothing to check)."""
    grammar = serializer.grammar(vocab) if isinstance(serializer, HasGrammar) else None
    if grammar is None:
        return False
    for seed in range(examples):
        value = serializer.example(random.Random(seed))
        for text in (serializer.serialize(value), serializer.serialize(value, random.Random(seed + 1000))):
            ids = vocab.encode(text)
            position = grammar.rejects([*ids, vocab.eos_id])
            if position is not None:
                found = vocab.tokens(text)[position] if position < len(ids) else "[EOS]"
                raise ConformanceError(
                    f"{where} the grammar refuses token {position} ({found!r}) of what serialize writes for example "
                    f"seed {seed}: {text!r}"
                )
    shortest = grammar.shortest(grammar.start()) + 1
    for seed in range(walks):
        rng = random.Random(seed)
        limit = budget if seed % 2 == 0 else rng.randint(min(shortest, budget), budget)  # half: a tighter budget
        ids, ended = random_walk(grammar, limit, rng)
        text = decoded_text(vocab, ids)
        if not ended:
            raise ConformanceError(f"{where} a walk of the grammar did not end with [EOS] within {limit} ids: {text!r}")
        try:
            serializer.parse(text)
        except Exception as exc:
            raise ConformanceError(
                f"{where} the grammar allows a string that does not parse (walk {seed}): {text!r}: {exc}"
            ) from None
    return True


def check_grammar(modality: Modality, registry: Registry, vocab: TextVocabulary, walks: int = WALKS) -> bool:
    """The contract for ``modality``'s serializer and, when it shares its model key with other plugins, for the
    group's serializer; the budget is the paper preset's token count. ``False`` when there is no grammar."""
    if registry.serializer_spec(modality.name) is None:
        return False
    budget = modality.spec.layout("paper").max_tokens
    where = f"[{modality.name} from {modality.plugin.label}]"
    checked = check_serializer_grammar(modality.serializer(), vocab, budget, where, walks)
    key = modality.model_key("paper")
    if len(registry.model_keys("paper")[key]) > 1:
        group = registry.key_serializer(key, "paper")
        checked = check_serializer_grammar(group, vocab, budget, f"{where} (group {key!r})", walks) or checked
    return checked
