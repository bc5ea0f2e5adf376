"""A per-GPU memory estimate of a training run, printed at start: model states under ZeRO and activations.

Model states follow the ZeRO paper's accounting (Rajbhandari et al. 2020, section 3.1) for Adam with ``P``
parameters on a world of ``N`` processes:

======== ========== ========= ================================================
dtype    parameters gradients optimiser states
======== ========== ========= ================================================
bf16     2 P bytes  2 P bytes 12 P bytes (fp32 master weights, momentum, variance)
fp32     4 P bytes  4 P bytes 8 P bytes (momentum, variance)
======== ========== ========= ================================================

ZeRO stage 1 divides the optimiser states by ``N``, stage 2 the gradients too, stage 3 the parameters too.

Activations are what backward keeps of one micro-batch, counted per token in elements of the compute dtype
(``h`` the width, ``m`` the MLP hidden size, attention through ``scaled_dot_product_attention``'s fused kernels, so
no (tokens x tokens) score matrix is kept; no dropout in these blocks):

* encoder block, per encoder token (registers included): norm1 in/out, q, k, v, attention output (6h), norm2
  in/out (2h) and the MLP: gated (SwiGLU) fc1 out, act out, fc3 out, product (4m), GELU fc1 out, act out (2m);
* decoder block, per decoder token: self-attention as above (6h), cross-attention query-norm in/out, q, output
  (4h), norm2 in/out (2h), the MLP; per encoder token the context-norm output, k and v (3h);
* the context (projected encoder output) once, per encoder token (h);
* with activation checkpointing each block keeps only its input (h per token) and one block at a time is
  recomputed in backward (the larger block's activations are added once);
* the logits of the target tokens, spread evenly over the decoder heads (mean vocabulary): in the compute dtype
  plus the float32 copy and log-softmax the loss keeps (bf16: 2 + 4 + 4 bytes; fp32: 4 + 4 bytes).

Not counted: the CUDA context and kernels (about 0.5-1 GiB), the allocator's fragmentation, DeepSpeed's
communication buckets, the attention biases and the batch itself. Read it as a lower bound that says which of
ZeRO stage, micro-batch or activation checkpointing to change before a run fails with out-of-memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

__all__ = ["GIB", "MemoryEstimate", "ModelShape", "estimate_memory", "estimate_run_memory"]

GIB = 1024**3
#: bytes per parameter of (parameters, gradients, optimiser states) with Adam, by training dtype (ZeRO paper)
STATE_BYTES = {"bf16": (2, 2, 12), "fp32": (4, 4, 8)}
ACT_BYTES = {"bf16": 2, "fp32": 4}


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of a network: parameter count and the block shapes."""

    params: int
    dim: int
    encoder_depth: int
    decoder_depth: int
    mlp_hidden: int
    gated_mlp: bool
    #: vocabulary sizes of the decoder heads (one per target key)
    head_vocabs: tuple[int, ...]
    num_register_tokens: int = 0

    @classmethod
    def of(cls, model: nn.Module) -> ModelShape:
        """The shape of a :class:`~fourm_core.model.network.FourMNetwork` (tied parameters counted once)."""
        unique = {id(p): p.numel() for p in model.parameters()}
        mlp = model.encoder[0].mlp if len(model.encoder) else model.decoder[0].mlp
        return cls(
            params=int(sum(unique.values())),
            dim=int(model.dim),
            encoder_depth=len(model.encoder),
            decoder_depth=len(model.decoder),
            mlp_hidden=int(mlp.fc1.out_features),
            gated_mlp=hasattr(mlp, "fc3"),
            head_vocabs=tuple(int(e.to_logits.out_features) for e in model.decoder_embeddings.values()),
            num_register_tokens=int(getattr(model, "num_register_tokens", 0)),
        )


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU by part; ``activations_other`` is the activations with the other checkpointing setting."""

    parameters: float
    gradients: float
    optimizer: float
    activations: float
    activations_other: float
    act_checkpoint: bool
    world: int
    zero_stage: int
    precision: str
    micro_batch: int

    @property
    def total(self) -> float:
        return self.parameters + self.gradients + self.optimizer + self.activations

    def line(self) -> str:
        def g(x: float) -> str:
            return f"{x / GIB:,.2f} GiB"

        ckpt = "with" if self.act_checkpoint else "without"
        other = "with" if not self.act_checkpoint else "without"
        return (
            f"memory per GPU (estimate; world {self.world}, ZeRO-{self.zero_stage}, {self.precision}): parameters "
            f"{g(self.parameters)}, gradients {g(self.gradients)}, optimizer {g(self.optimizer)}, activations "
            f"{g(self.activations)} (micro-batch {self.micro_batch}, {ckpt} activation checkpointing; "
            f"{g(self.activations_other)} {other}) = {g(self.total)}; not counted: CUDA context, fragmentation, "
            "communication buffers"
        )


def _model_states(shape: ModelShape, precision: str, zero_stage: int, world: int) -> tuple[float, float, float]:
    p, g, o = (b * shape.params for b in STATE_BYTES[precision])
    n = max(1, world)
    return (
        p / n if zero_stage >= 3 else p,
        g / n if zero_stage >= 2 else g,
        o / n if zero_stage >= 1 else o,
    )


def _activations(
    shape: ModelShape, precision: str, micro_batch: int, n_enc: int, n_dec: int, checkpoint: bool
) -> float:
    h, m = shape.dim, shape.mlp_hidden
    mlp = (4 if shape.gated_mlp else 2) * m
    n_enc = n_enc + shape.num_register_tokens
    encoder_block = n_enc * (8 * h + mlp)
    decoder_block = n_dec * (12 * h + mlp) + n_enc * 3 * h
    context = n_enc * h
    if checkpoint:
        blocks = shape.encoder_depth * n_enc * h + shape.decoder_depth * n_dec * h
        blocks += max(encoder_block if shape.encoder_depth else 0, decoder_block if shape.decoder_depth else 0)
    else:
        blocks = shape.encoder_depth * encoder_block + shape.decoder_depth * decoder_block
    act = ACT_BYTES[precision]
    per_sample = (blocks + context) * act
    vocab = sum(shape.head_vocabs) / max(1, len(shape.head_vocabs))
    logit_bytes = act + 4 + (4 if act != 4 else 0)
    per_sample += n_dec * vocab * logit_bytes
    return float(micro_batch * per_sample)


def estimate_memory(
    shape: ModelShape,
    *,
    precision: str,
    zero_stage: int,
    world: int,
    micro_batch: int,
    input_tokens: int,
    target_tokens: int,
    act_checkpoint: bool,
) -> MemoryEstimate:
    """Bytes per GPU of a run with these settings (see the module docstring for what is counted)."""
    params, grads, optim = _model_states(shape, precision, zero_stage, world)

    def acts(ckpt: bool) -> float:
        return _activations(shape, precision, micro_batch, input_tokens, target_tokens, ckpt)

    return MemoryEstimate(
        params,
        grads,
        optim,
        acts(act_checkpoint),
        acts(not act_checkpoint),
        act_checkpoint,
        world,
        zero_stage,
        precision,
        micro_batch,
    )


def estimate_run_memory(config: Any, model: nn.Module, world: int) -> MemoryEstimate:
    """:func:`estimate_memory` of a :class:`~fourm_core.training.config.RunConfig` and its built network."""
    e = config.engine
    return estimate_memory(
        ModelShape.of(model),
        precision=e.precision,
        zero_stage=e.zero_stage,
        world=world,
        micro_batch=e.micro_batch_size,
        input_tokens=config.budget("input")[1],
        target_tokens=config.budget("target")[1],
        act_checkpoint=bool(getattr(model.config, "use_act_checkpoint", False)),
    )
