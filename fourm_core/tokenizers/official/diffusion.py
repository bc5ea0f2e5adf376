"""ml-4m's diffusion sampling for the DiVAE tokenizers: noise schedulers and the conditional sampling loop.

ml-4m vendors diffusers 0.20's DDPM / DDIM schedulers with a few changes (``fourm/vq/scheduling``). What is used
from diffusers (0.42 here) as is, and what is not:

- **step**: diffusers' ``DDPMScheduler.step`` / ``DDIMScheduler.step`` compute ml-4m's numbers bit for bit (same
  formulas, same order, same ``randn_tensor`` draw per DDPM step with t > 0), so they are used unchanged.
- **betas**: ``linear``, ``scaled_linear``, ``squaredcos_cap_v2`` (and ``sigmoid`` for DDPM) are diffusers'; ml-4m's
  ``zero_terminal_snr`` is diffusers' ``rescale_betas_zero_snr`` (the same algorithm, same operations).
  ``shifted_cosine:<s>`` (a cosine schedule shifted by ``s`` in log-SNR, https://arxiv.org/abs/2305.18231) is ml-4m's
  own: it sets ``alphas_cumprod`` directly (terminal value exactly 0, no ``zero_terminal_snr`` rescaling), computed
  here by :func:`shifted_cosine_alphas_cumprod`.
- **timesteps**: ml-4m's DDPM always uses ``leading`` spacing (diffusers' with ``steps_offset=0``) and ignores the
  ``mode`` argument. ml-4m's DDIM modes differ from diffusers' ``timestep_spacing``: ``trailing`` steps by the
  *integer* ``T // n`` from ``T`` (``arange(T, 0, -(T // n)) - 1``), so when ``n`` does not divide ``T`` it yields
  more than ``n`` timesteps (3 steps over 1000 give 999, 666, 333, 0) where diffusers steps by the float ``T / n``;
  ``linspace`` is ``linspace(T, 1, n).round() - 1``. :meth:`DDIMScheduler.set_timesteps` implements ml-4m's rules.
- **defaults**: ml-4m's scheduler classes default to ``prediction_type="v_prediction"`` and
  ``zero_terminal_snr=True``; ``DiVAE`` passes its own values for both.

:func:`sample` is ml-4m's ``PipelineCond.__call__``: one ``torch.randn((B, C, H, W), generator=g)`` on the CPU
(float32) for the initial noise, then per timestep the decoder and ``scheduler.step(output.float(), t, x,
generator=g)``. Its classifier-free-guidance branch is not reproduced: ``DiVAE`` never passes a guidance scale, and
the decoders ignore the ``unconditional`` flag it would send.
"""

from __future__ import annotations

import math
from typing import Any

import diffusers
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = [
    "SCHEDULERS",
    "DDIMScheduler",
    "DDPMScheduler",
    "make_scheduler",
    "sample",
    "shifted_cosine_alphas_cumprod",
]

_SHIFTED = "shifted_cosine:"


def shifted_cosine_alphas_cumprod(num_train_timesteps: int, noise_shift: float = 1.0) -> torch.Tensor:
    """ml-4m's ``scaled_cosine_alphas``: cumulative alphas of a cosine schedule shifted by ``noise_shift`` in log-SNR
    (1.0 is the plain cosine schedule, < 1 less noisy), with the log-SNR clamped to [-15, 15] and the last value 0.
    """
    t = torch.linspace(0, 1, num_train_timesteps).to(torch.float64)
    log_snr = -2 * (torch.tan(torch.pi * t / 2).log() + math.log(noise_shift))
    alphas_cumprod = log_snr.clamp(-15, 15).float().sigmoid()
    alphas_cumprod[-1] = 0.0
    return alphas_cumprod


def _split_schedule(beta_schedule: str) -> tuple[str, float | None]:
    """``"shifted_cosine:0.5"`` -> ("linear" placeholder for the parent, 0.5); other names pass through."""
    if beta_schedule.startswith(_SHIFTED):
        return "linear", float(beta_schedule[len(_SHIFTED) :])
    return beta_schedule, None


class _Ml4mSchedule:
    """Shared by both schedulers: install a shifted-cosine ``alphas_cumprod`` and record ml-4m's names in the
    config (``beta_schedule`` as given, ``zero_terminal_snr``)."""

    alphas_cumprod: torch.Tensor

    def _finish(self, beta_schedule: str, shift: float | None, zero_terminal_snr: bool, num_train: int) -> None:
        if shift is not None:
            self.alphas_cumprod = shifted_cosine_alphas_cumprod(num_train, shift)
            alphas = torch.cat([self.alphas_cumprod[:1], self.alphas_cumprod[1:] / self.alphas_cumprod[:-1]])
            self.alphas, self.betas = alphas, 1.0 - alphas
        self.register_to_config(beta_schedule=beta_schedule, zero_terminal_snr=zero_terminal_snr)  # type: ignore[attr-defined]


class DDPMScheduler(_Ml4mSchedule, diffusers.DDPMScheduler):
    """ml-4m's ``DDPMScheduler``: diffusers' with ml-4m's constructor names and defaults and ``shifted_cosine``."""

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Any = None,
        variance_type: str = "fixed_small",
        clip_sample: bool = True,
        prediction_type: str = "v_prediction",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        zero_terminal_snr: bool = True,
    ) -> None:
        parent_schedule, shift = _split_schedule(beta_schedule)
        super().__init__(
            num_train_timesteps=num_train_timesteps,
            beta_start=beta_start,
            beta_end=beta_end,
            beta_schedule=parent_schedule,
            trained_betas=trained_betas,
            variance_type=variance_type,
            clip_sample=clip_sample,
            prediction_type=prediction_type,
            thresholding=thresholding,
            dynamic_thresholding_ratio=dynamic_thresholding_ratio,
            clip_sample_range=clip_sample_range,
            sample_max_value=sample_max_value,
            timestep_spacing="leading",
            steps_offset=0,
            rescale_betas_zero_snr=zero_terminal_snr and shift is None,
        )
        self._finish(beta_schedule, shift, zero_terminal_snr, num_train_timesteps)

    def set_timesteps(  # type: ignore[override]
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: list[int] | None = None,
        mode: str | None = None,
    ) -> None:
        """diffusers' ``leading`` spacing; ``mode`` is accepted and ignored, as ml-4m's DDPM does."""
        super().set_timesteps(num_inference_steps, device=device, timesteps=timesteps)


class DDIMScheduler(_Ml4mSchedule, diffusers.DDIMScheduler):
    """ml-4m's ``DDIMScheduler``: diffusers' step, ml-4m's timestep modes (see the module docstring)."""

    MODES = ("leading", "trailing", "linspace")

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        beta_schedule: str = "linear",
        trained_betas: Any = None,
        clip_sample: bool = True,
        set_alpha_to_one: bool = True,
        steps_offset: int = 0,
        prediction_type: str = "v_prediction",
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        clip_sample_range: float = 1.0,
        sample_max_value: float = 1.0,
        zero_terminal_snr: bool = True,
    ) -> None:
        parent_schedule, shift = _split_schedule(beta_schedule)
        super().__init__(
            num_train_timesteps=num_train_timesteps,
            beta_start=beta_start,
            beta_end=beta_end,
            beta_schedule=parent_schedule,
            trained_betas=trained_betas,
            clip_sample=clip_sample,
            set_alpha_to_one=set_alpha_to_one,
            steps_offset=steps_offset,
            prediction_type=prediction_type,
            thresholding=thresholding,
            dynamic_thresholding_ratio=dynamic_thresholding_ratio,
            clip_sample_range=clip_sample_range,
            sample_max_value=sample_max_value,
            rescale_betas_zero_snr=zero_terminal_snr and shift is None,
        )
        self._finish(beta_schedule, shift, zero_terminal_snr, num_train_timesteps)
        if shift is not None:
            self.final_alpha_cumprod = torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0]

    def set_timesteps(  # type: ignore[override]
        self, num_inference_steps: int, device: str | torch.device | None = None, mode: str = "trailing"
    ) -> None:
        """ml-4m's DDIM timesteps (``trailing`` by default; ``leading``, ``linspace``), plus ``steps_offset``."""
        total = self.config.num_train_timesteps
        if num_inference_steps > total:
            raise ValueError(f"num_inference_steps {num_inference_steps} exceeds the {total} training timesteps")
        self.num_inference_steps = num_inference_steps
        ratio = total // num_inference_steps
        if mode == "leading":
            steps = (np.arange(0, num_inference_steps) * ratio).round()[::-1].copy().astype(np.int64)
        elif mode == "trailing":
            steps = np.arange(total, 0, -ratio).round().astype(np.int64) - 1
        elif mode == "linspace":
            steps = np.linspace(total, 1, num_inference_steps).round().astype(np.int64) - 1
        else:
            raise ValueError(f"unknown timestep mode {mode!r}; choices: {', '.join(self.MODES)}")
        self.timesteps = torch.from_numpy(steps).to(device) + self.config.steps_offset


#: scheduler names ``DiVAE`` and ``decode_tokens(scheduler=...)`` accept (also ``DDPMScheduler`` / ``DDIMScheduler``)
SCHEDULERS: dict[str, type[diffusers.SchedulerMixin]] = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}


def scheduler_class(name: str) -> type[diffusers.SchedulerMixin]:
    """The scheduler class for ``name`` (``ddpm``, ``ddim``, case-insensitive, an optional ``Scheduler`` suffix).

    ml-4m's ``DiVAE`` silently takes DDIM for any name other than ``ddpm``; an unknown name is refused here."""
    key = name.lower().removesuffix("scheduler")
    if key not in SCHEDULERS:
        raise ValueError(f"unknown diffusion scheduler {name!r}; choices: {', '.join(SCHEDULERS)}")
    return SCHEDULERS[key]


def make_scheduler(name: str, **config: Any) -> diffusers.SchedulerMixin:
    """Build the scheduler ``name`` with ml-4m's constructor keywords (``beta_schedule``, ``prediction_type``,
    ``zero_terminal_snr``, ``thresholding``, ``clip_sample``, ``num_train_timesteps``, ...)."""
    return scheduler_class(name)(**config)


@torch.no_grad()
def sample(
    model: nn.Module,
    scheduler: diffusers.SchedulerMixin,
    cond: torch.Tensor,
    *,
    timesteps: int | None = None,
    generator: torch.Generator | None = None,
    image_size: int | tuple[int, int] | None = None,
    verbose: bool = True,
    scheduler_timesteps_mode: str = "trailing",
    orig_res: torch.Tensor | tuple[int, int] | None = None,
) -> torch.Tensor:
    """Denoise from Gaussian noise conditioned on ``cond`` (B, D, H_Q, W_Q), as ml-4m's ``PipelineCond``.

    ``timesteps`` defaults to the scheduler's training timesteps; ``image_size`` to the decoder's ``sample_size``
    (448 or 512 for the released tokenizers, not the token grid: pass it); ``scheduler_timesteps_mode`` reaches
    DDIM only. The initial noise is drawn on the CPU from ``generator`` and then moved, as ml-4m does."""
    steps = scheduler.config.num_train_timesteps if timesteps is None else timesteps
    size = model.sample_size if image_size is None else image_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    device = next(model.parameters()).device
    image = torch.randn((cond.shape[0], model.in_channels, height, width), generator=generator).to(device)
    if isinstance(scheduler, _Ml4mSchedule):
        scheduler.set_timesteps(steps, mode=scheduler_timesteps_mode)
    else:  # a stock diffusers scheduler: its own spacing rule
        scheduler.set_timesteps(steps)
    for t in tqdm(scheduler.timesteps, disable=not verbose):
        output = model(image, t, cond, orig_res=orig_res)
        with torch.autocast(device.type, enabled=False):
            image = scheduler.step(output.float(), t, image, generator=generator).prev_sample
    return image
