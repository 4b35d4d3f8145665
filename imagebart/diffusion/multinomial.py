"""Forward process q of the multinomial diffusion and its posterior, on integer token tensors.

Tokens are int64 tensors of any shape whose first axis is the batch, e.g. (B, L); the
distributions returned have one more trailing axis of size K (the codebook size):

    q(x_t | x_{t-1})      = Cat(α_t · onehot(x_{t-1}) + (1 - α_t) / K)
    q(x_t | x_0)          = Cat(ᾱ_t · onehot(x_0) + (1 - ᾱ_t) / K)
    q(x_{t-1} | x_t, x_0) ∝ q(x_{t-1} | x_0) · q(x_t | x_{t-1}),  normalised over x_{t-1}

``t`` is an int (same step for the whole batch) or an int64 tensor of shape (B,) or (B, 1)
(the original's ``scale``). The schedule must live on the tokens' device (it is a module:
move it with the model). Legend: B batch, L tokens, K codes, T steps.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from imagebart.diffusion.schedule import MultinomialSchedule

# sampling


def q_sample_step(
    x_prev: torch.Tensor, beta_t, num_codes: int, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """x_t ~ q(x_t | x_{t-1}): each token is redrawn uniformly from K codes with probability β_t.

    The random draws are those of the original release (one ``randint`` over all tokens, then one
    ``bernoulli`` with float32 probabilities), so a seeded CPU run reproduces its chains.
    """
    noise = torch.randint(0, num_codes, x_prev.shape, generator=generator, device=x_prev.device)
    p = torch.full(x_prev.shape, float(beta_t), dtype=torch.float32, device=x_prev.device)
    redraw = torch.bernoulli(p, generator=generator).bool()
    return torch.where(redraw, noise, x_prev)


def q_sample_chain(
    x0: torch.Tensor,
    schedule: MultinomialSchedule,
    num_codes: int,
    t_max: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """The chain x_0, x_1, ..., x_{t_max} drawn step by step, stacked: (t_max + 1, *x0.shape).

    Training takes the pair (x_{t-1}, x_t) = (chain[t-1], chain[t]). The original always drew the
    full chain (t_max = T, the default) whatever t it trained; keep that to reproduce its draws.
    """
    t_max = schedule.n_scales if t_max is None else t_max
    if not 0 <= t_max <= schedule.n_scales:
        raise ValueError(f"t_max must be in 0..{schedule.n_scales}, got {t_max}")
    chain = [x0]
    for t in range(1, t_max + 1):
        chain.append(q_sample_step(chain[-1], schedule.betas[t], num_codes, generator=generator))
    return torch.stack(chain)  # (t_max+1, B, ...)


# distributions


def q_step_probs(x_prev: torch.Tensor, t, schedule: MultinomialSchedule, num_codes: int) -> torch.Tensor:
    """q(x_t | x_{t-1}) for every value of x_t: (*x_prev.shape, K)."""
    t = _as_timesteps(t, x_prev, schedule, t_min=1)
    return _keep_or_uniform(x_prev, schedule.alphas[t], num_codes)


def q_probs(x0: torch.Tensor, t, schedule: MultinomialSchedule, num_codes: int) -> torch.Tensor:
    """q(x_t | x_0) in closed form for every value of x_t: (*x0.shape, K)."""
    t = _as_timesteps(t, x0, schedule, t_min=0)
    return _keep_or_uniform(x0, schedule.alphas_cumprod[t], num_codes)


def q_posterior(
    x0: torch.Tensor, x_t: torch.Tensor, t, schedule: MultinomialSchedule, num_codes: int
) -> torch.Tensor:
    """q(x_{t-1} | x_t, x_0) for every value of x_{t-1}, normalised: (*x0.shape, K), e.g. (B, L, K).

    The soft-loss target. For the original's (B, K, h, w) layout pass (B, h, w) tokens and move
    the last axis: ``rearrange(post, 'b h w k -> b k h w')``.
    """
    if x0.shape != x_t.shape:
        raise ValueError(f"x0 and x_t must have the same shape, got {tuple(x0.shape)} and {tuple(x_t.shape)}")
    t = _as_timesteps(t, x0, schedule, t_min=1)
    from_x0 = _keep_or_uniform(x0, schedule.alphas_cumprod[t - 1], num_codes)  # (B, L, K) q(x_{t-1} | x_0)
    # q(x_t | x_{t-1}) as a function of x_{t-1}: the same mixture around x_t (it is symmetric)
    to_xt = _keep_or_uniform(x_t, schedule.alphas[t], num_codes)  # (B, L, K)
    posterior = from_x0 * to_xt  # (B, L, K)
    return posterior / posterior.sum(-1, keepdim=True)  # normaliser = q(x_t | x_0)


# helpers


def _keep_or_uniform(x: torch.Tensor, keep: torch.Tensor, num_codes: int) -> torch.Tensor:
    """keep · onehot(x) + (1 - keep) / K, with keep of shape (B,) broadcast over the tokens."""
    keep = keep.reshape(-1, *([1] * x.ndim))  # (B, 1, ..., 1)
    onehot = F.one_hot(x, num_codes)  # (B, L, K)
    return keep * onehot + (1 - keep) / num_codes


def _as_timesteps(t, x: torch.Tensor, schedule: MultinomialSchedule, t_min: int) -> torch.Tensor:
    """t as an int64 (B,) tensor on x's device, checked against 0/1..T."""
    batch = x.shape[0]
    t = torch.as_tensor(t, device=x.device)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"t must be an integer or an integer tensor, got dtype {t.dtype}")
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"t must be an int or have shape ({batch},) or ({batch}, 1), got {tuple(t.shape)}")
    if t.numel() and (t.min() < t_min or t.max() > schedule.n_scales):
        raise ValueError(f"t must lie in {t_min}..{schedule.n_scales}, got {t.tolist()}")
    return t.long()


# a training example


class Corruption(NamedTuple):
    """One training example of reverse step t, drawn from x_0."""

    x_prev: torch.Tensor  # x_{t-1} (B, L), the target
    x_t: torch.Tensor  # (B, L), the input
    t: torch.Tensor  # (B,) int64, in 1..T
    posterior: torch.Tensor  # q(x_{t-1} | x_t, x_0) (B, L, K), the soft target


def corrupt(x0: torch.Tensor, t: torch.Tensor, schedule: MultinomialSchedule, num_codes: int,
            generator: Optional[torch.Generator] = None) -> Corruption:
    """Draw the whole chain x_0 -> x_T step by step (as the original did, whatever t is trained)
    and take (x_{t-1}, x_t) and the posterior for each example's t (B,)."""
    chain = q_sample_chain(x0, schedule, num_codes, generator=generator)  # (T+1, B, L)
    rows = torch.arange(x0.shape[0], device=x0.device)
    x_prev, x_t = chain[t - 1, rows], chain[t, rows]  # (B, L) each
    return Corruption(x_prev, x_t, t, q_posterior(x0, x_t, t, schedule, num_codes))
