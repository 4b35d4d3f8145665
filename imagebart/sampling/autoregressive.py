"""Token-by-token sampling of one reverse step x_{t-1} ~ p(x_{t-1} | x_t), with a KV cache.

Two network kinds: the encoder-decoder (encoder reads ``[t, (cond…), x_t]`` once, the decoder
extends ``[sos, …]``) and the decoder-only GPT (reads ``[t, (cond…), x_{t-1}…]``). Both cache
attention keys/values step to step; ``use_cache=False`` re-runs the full prefix every step (the
original's behaviour, kept as a reference for tests and benchmarks). ``guide`` logits (B, L, K)
are added before filtering: editing uses 0 / -inf to force kept tokens.

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


def _guided(logits: torch.Tensor, guide: Optional[torch.Tensor], position: int) -> torch.Tensor:
    return logits if guide is None else logits + guide[:, position]


# encoder-decoder


@torch.no_grad()
def sample_encoder_decoder(transformer, src: torch.Tensor, steps: int, sos: int = 0,
                           temperature: float = 1.0, top_k: Optional[int] = None,
                           guide: Optional[torch.Tensor] = None, greedy: bool = False,
                           use_cache: bool = True, generator: Optional[torch.Generator] = None,
                           callback: Optional[Callable[[int], None]] = None,
                           return_logits: bool = False):
    """Sample ``steps`` tokens given encoder input ``src`` = ``[t, (cond…), x_t]`` (B, S)."""
    b = src.shape[0]
    context = transformer.encode(src)  # (B, S, D), once per scale
    tokens = torch.full((b, 1), sos, dtype=torch.long, device=src.device)  # [sos]
    cache, new, all_logits = None, tokens, []
    for i in range(steps):
        if callback is not None:
            callback(i)
        if use_cache:
            logits, cache = transformer.decode_step(new, context, cache, src=src)  # (B, m, K)
        else:
            logits, _ = transformer(src, tokens, enc=context)  # (B, i+1, K)
        logits = _guided(logits[:, -1], guide, i)  # (B, K)
        all_logits.append(logits)
        new = pick_tokens(logits, temperature, top_k, greedy, generator)  # (B, 1)
        tokens = torch.cat((tokens, new), dim=1)
    out = tokens[:, 1:]  # drop sos
    return (out, torch.stack(all_logits, 1)) if return_logits else out


# decoder-only


@torch.no_grad()
def sample_decoder_only(gpt, prefix: torch.Tensor, steps: int, temperature: float = 1.0,
                        top_k: Optional[int] = None, guide: Optional[torch.Tensor] = None,
                        greedy: bool = False, use_cache: bool = True,
                        generator: Optional[torch.Generator] = None,
                        callback: Optional[Callable[[int], None]] = None,
                        return_logits: bool = False):
    """Sample ``steps`` tokens after ``prefix`` = ``[t, (cond…)]`` (B, C) with a GPT."""
    tokens, new, past, all_logits = prefix, prefix, None, []
    for i in range(steps):
        if callback is not None:
            callback(i)
        if use_cache:
            logits, _, present = gpt.forward_with_past(new, past=past)  # (B, m, K)
            past = present if past is None else torch.cat((past, present), dim=-2)  # (layers, 2, B, h, n, e)
        else:
            logits, _ = gpt(tokens)  # (B, C+i, K)
        logits = _guided(logits[:, -1], guide, i)  # (B, K)
        all_logits.append(logits)
        new = pick_tokens(logits, temperature, top_k, greedy, generator)  # (B, 1)
        tokens = torch.cat((tokens, new), dim=1)
    out = tokens[:, prefix.shape[1]:]
    return (out, torch.stack(all_logits, 1)) if return_logits else out
