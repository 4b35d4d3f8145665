"""Token-by-token sampling of one reverse step x_{t-1} ~ p_θ(x_{t-1} | x_t), with a KV cache.

One loop for both network kinds: it only uses the denoising-network interface
(``decode_step`` / ``teacher_forced``, see :mod:`imagebart.modules.xtransformers.x_transformer`),
so the encoder-decoder (condition ``[t, (cond…), x_t]``) and the decoder-only GPT (condition
``[T, (cond…)]``) sample the same way. ``use_cache=False`` re-runs the whole prefix at every step
(the original's sampler, kept as the reference for tests and benchmarks). ``guide`` logits
(B, L, K) are added before filtering: editing forces kept tokens with 0 / -inf.

Classifier-free guidance: given ``uncond_condition`` (the same input with the null condition),
the conditional and unconditional rows run as one batch of 2B (one KV cache holds both
branches), and each position samples from l_u + s·(l_c - l_u), s = ``guidance_scale``.
``condition_mask`` (and ``uncond_mask``), (B, C) bool, mark padding in a condition (False), e.g.
the padded caption tokens of a text-conditional chain; no position attends to it.

Legend: B batch, L tokens per image, K codes.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

# logit filters


def top_k_logits(logits: torch.Tensor, k: Optional[int]) -> torch.Tensor:
    """Keep the k largest logits per row, -inf elsewhere (k >= K or None keeps all)."""
    if k is None or k >= logits.shape[-1]:
        return logits
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def pick_tokens(logits: torch.Tensor, temperature: float = 1.0, top_k: Optional[int] = None,
                greedy: bool = False, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One token per row from (B, K) logits: temperature, top-k, then multinomial (or argmax)."""
    if greedy:
        return logits.argmax(dim=-1, keepdim=True)  # (B, 1)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    probs = F.softmax(top_k_logits(logits / temperature, top_k).float(), dim=-1)  # (B, K)
    return torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)


def guided_logits(cond_logits: torch.Tensor, uncond_logits: torch.Tensor, scale: float) -> torch.Tensor:
    """l_u + s·(l_c - l_u), written as l_c + (s-1)·(l_c - l_u) so that s = 1 returns l_c exactly."""
    return cond_logits + (scale - 1.0) * (cond_logits - uncond_logits)


# the loop


@torch.no_grad()
def sample_tokens(network, condition: torch.Tensor, steps: int, temperature: float = 1.0,
                  top_k: Optional[int] = None, guide: Optional[torch.Tensor] = None, greedy: bool = False,
                  use_cache: bool = True, generator: Optional[torch.Generator] = None,
                  callback: Optional[Callable[[int], None]] = None, return_logits: bool = False,
                  uncond_condition: Optional[torch.Tensor] = None, guidance_scale: float = 1.0,
                  condition_mask: Optional[torch.Tensor] = None, uncond_mask: Optional[torch.Tensor] = None):
    """Sample ``steps`` tokens (B, steps) given ``condition`` (B, C); optionally the logits (B, steps, K)."""
    guided = uncond_condition is not None
    both = (lambda x: torch.cat((x, x))) if guided else (lambda x: x)  # feed both branches the same tokens
    if guided:
        if uncond_condition.shape != condition.shape:
            raise ValueError(f"uncond_condition {tuple(uncond_condition.shape)} must match condition "
                             f"{tuple(condition.shape)}")
        condition = torch.cat((condition, uncond_condition))  # (2B, C): conditional rows first
        if condition_mask is not None or uncond_mask is not None:
            full = condition.new_ones(uncond_condition.shape, dtype=torch.bool)
            condition_mask = torch.cat((full if condition_mask is None else condition_mask,
                                        full if uncond_mask is None else uncond_mask))  # (2B, C)
    masked = {} if condition_mask is None else {"condition_mask": condition_mask.bool()}
    tokens = condition.new_zeros((len(condition) // (2 if guided else 1), 0))  # (B, 0) sampled so far
    new, cache, all_logits = tokens, None, []
    for i in range(steps):
        if callback is not None:
            callback(i)
        if use_cache:
            logits, cache = network.decode_step(condition, both(new), cache, **masked)  # (B or 2B, m, K)
        else:  # the whole prefix again; the appended placeholder is never read (causal)
            logits = network.teacher_forced(condition, F.pad(both(tokens), (0, 1)), **masked)  # (B or 2B, i+1, K)
        logits = logits[:, -1]  # (B or 2B, K) for position i
        if guided:
            logits = guided_logits(*logits.chunk(2), guidance_scale)  # (B, K)
        if guide is not None:
            logits = logits + guide[:, i]
        all_logits.append(logits)
        new = pick_tokens(logits, temperature, top_k, greedy, generator)  # (B, 1)
        tokens = torch.cat((tokens, new), dim=1)
    return (tokens, torch.stack(all_logits, 1)) if return_logits else tokens
