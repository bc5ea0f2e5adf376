"""4M masking sampler: which tokens of a sample the encoder sees (inputs) and which the decoder predicts (targets).

Follows ml-4m's ``UnifiedMasking`` (reference ``ml-4m.md`` §3.2-3.3): a mixture component is picked by its
sampling weight, the input and target token budgets are split over the present modalities by Dirichlet draws with
that component's alphas, image-like tokens are chosen by random permutation and sequences by T5-style span masking
with ``[S_k]`` sentinels. Masks use ml-4m's convention: ``True`` means masked out (not an input / not a target).

One deliberate difference (``FourMMasker(redistribute=True)``, the default): budget that a key cannot hold is not
lost as in ml-4m (on 4M-21-like samples a fifth of the input budget, a third of the inputs actually used) but
water-filled over the keys of the same draw that have room, in proportion to their Dirichlet shares; keys with
alpha 0 never receive any. ``redistribute=False`` gives ml-4m's budgets.

The sampler runs per sample in a data loader worker, so it is written for one core: plain Python over the ~20 keys
for the budgets, a fixed number of numpy calls per sequence with budget and for all token keys together, numpy
arrays inside :class:`MaskedKey` (read as torch tensors on access).

The core never names a modality: everything about a model key (its masking unit, size, input/target flags) comes
from its :class:`~fourm_core.keys.KeyInfo` (``KeyTable.from_registry(registry, preset)``, or built by the caller).

The package, along its seams: :mod:`.config` (the mixture models users configure, :func:`load_mixture`),
:mod:`.budgets` (Dirichlet splits and water-filling), :mod:`.spans` (span masking, ids), :mod:`.tokens` (token
masks), :mod:`.masked` (:class:`MaskedKey`) and :mod:`.masker` (:class:`FourMMasker`). Modules import each other
relatively, so a copy of the package taken from any git revision imports as itself (``benchmarks/bench_masking.py``).
"""

from .budgets import MIN_ALPHA
from .config import KeepScheme, KeyAlphas, MaskingMixture, MaskingStrategy, TokenRange, load_mixture
from .masked import MaskedKey, SampleContent
from .masker import FourMMasker
from .spans import (
    EOS_ID,
    KEEP_PROB_DECAY,
    NUM_SENTINELS,
    PAD_ID,
    SENTINEL_BASE_ID,
    chunk_boundaries_to_chunks,
    merge_spans,
    span_mask,
)

__all__ = [
    "EOS_ID",
    "KEEP_PROB_DECAY",
    "MIN_ALPHA",
    "NUM_SENTINELS",
    "PAD_ID",
    "SENTINEL_BASE_ID",
    "FourMMasker",
    "KeepScheme",
    "KeyAlphas",
    "MaskedKey",
    "MaskingMixture",
    "MaskingStrategy",
    "SampleContent",
    "TokenRange",
    "chunk_boundaries_to_chunks",
    "load_mixture",
    "merge_spans",
    "span_mask",
]
