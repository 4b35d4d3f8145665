"""Mask-guided editing with a trained chain: inpainting, completion, outpainting.

Every reverse step p(x_{t-1} | x_t) reads the whole of x_t bidirectionally, so a chain trained
for plain sampling edits any masked region without mask-specific training:

1. encode the image to x_0 and bring the mask (1 = keep) to the token grid (nearest);
2. x_T = uniform noise where the mask edits and x_0 where it keeps;
3. for t = T..1, sample x_{t-1} token by token with ``guide`` logits that are 0 everywhere except
   at kept positions, where they are 0 for the clean token and -inf for every other code, so
   kept tokens are forced (and the later tokens of the autoregressive pass condition on them);
4. chain length n_t: after the first pass at scale t, the scale runs n_t - 1 more times; pass
   i (i = 1..n_t-1) first re-noises ALL positions of the current tokens (kept ones too: the
   forcing restores them in the output) by redrawing each uniformly with probability
   (1 - i/n_t)·β_t, and feeds the result to the same scale t as if it were x_t.

Step 4 follows the original's ``scripts/inpaint_imagebart.py`` (``sample_unconditional``): same
redraw probability, same order of random draws (the replacement codes, then the Bernoulli
redraw decisions, both over the whole grid), re-noising of kept positions included. With a
class-conditional chain, ``class_label`` turns this into class-guided editing of the masked region
(the original app refused conditional chains).

Per-scale settings (``top_k``, ``temperature``, ``chain_length``) are one value or a list of T
values in SAMPLING order (first entry = scale T, last = scale 1), like the chain sampler.
The original inpainting app asked for chain lengths per scale number (#1..T) and, unlike its
sampling app, did not reverse its top-k/temperature lists, so their first entry went to scale 1
although the inputs were labelled "sampling order"; here every list is in sampling order.

Legend: B batch, L tokens per image (h·w), K codes, T n_scales.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Union

import torch

from imagebart.sampling.chain import resolve_schedule
from imagebart.sampling.masks import latent_mask

logger = logging.getLogger(__name__)

PerScale = Union[None, int, float, Sequence]
Progress = Callable[[int, int, int], None]


@dataclass
class EditResult:
    """What :func:`edit` returns; ``mask`` is the latent keep-mask actually used."""

    tokens: torch.Tensor  # (B, L) final x_0
    images: torch.Tensor  # (B, 3, H, W) in [-1, 1]
    x0: torch.Tensor  # (B, L) clean tokens of the input
    mask: torch.Tensor  # (B, L) 1 = keep, 0 = edit
    intermediates: Optional[List[torch.Tensor]] = None  # x_T, x_{T-1}, ..., x_0, each (B, L)
    class_label: Optional[torch.Tensor] = None  # (B,) labels used (conditional chains)


# helpers


def _check_chain_length(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"chain_length values must be integers >= 1, got {value!r}")
    return value


def default_chain_lengths(redraw_prob, n_scales: int) -> list:
    """The original app's defaults, in sampling order: 3 per scale for the geometric schedule,
    otherwise 1 for the last scale T and 5 for the others."""
    if redraw_prob == "geometric":
        return [3] * n_scales
    return [1] + [5] * (n_scales - 1)


def keep_guide(x0: torch.Tensor, keep: torch.Tensor, num_codes: int) -> torch.Tensor:
    """Additive logits (B, L, K): 0 / -inf forcing x0 at kept positions, 0 at edited ones.

    The sampler adds them before temperature and top-k; -inf stays -inf under both, so only the
    clean token survives at a kept position and it is drawn with probability 1.
    """
    guide = torch.zeros(*x0.shape, num_codes, device=x0.device)  # (B, L, K)
    forced = torch.full_like(guide, float("-inf")).scatter_(-1, x0[..., None], 0.0)  # (B, L, K)
    return torch.where(keep.bool()[..., None], forced, guide)


def _output_vocabulary(model, num_codes: int) -> int:
    """How many logits the denoiser's sampler produces (configs may give more than K)."""
    net = model.transformer
    decoder = getattr(net, "decoder", None)
    return int(decoder.num_tokens if decoder is not None else getattr(net, "vocab_size", num_codes))


def widen_guide(guide: torch.Tensor, keep: torch.Tensor, vocabulary: int) -> torch.Tensor:
    """Pad the guide (B, L, K) to ``vocabulary`` logits: extra codes are -inf at kept positions."""
    extra = vocabulary - guide.shape[-1]
    if extra <= 0:
        return guide
    pad = torch.zeros(*guide.shape[:-1], extra, device=guide.device)  # (B, L, V-K)
    pad.masked_fill_(keep.bool()[..., None], float("-inf"))
    return torch.cat((guide, pad), dim=-1)  # (B, L, V)


def renoise(x: torch.Tensor, redraw_prob: float, num_codes: int,
            generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Redraw each token uniformly with probability ``redraw_prob`` (the forward step q)."""
    codes = torch.randint(0, num_codes, x.shape, device=x.device, generator=generator)  # (B, L)
    probs = torch.full(x.shape, float(redraw_prob), device=x.device)  # (B, L)
    redraw = torch.bernoulli(probs, generator=generator).bool()  # (B, L)
    return torch.where(redraw, codes, x)


def _keep_mask(mask, batch_size: int, latent_shape: Sequence[int]) -> torch.Tensor:
    """Any mask form -> (B, L) float 0/1 on the token grid."""
    h, w = latent_shape
    mask = torch.as_tensor(mask) if not isinstance(mask, torch.Tensor) else mask
    if mask.dim() == 1:  # (L,) flat latent mask
        if mask.numel() != h * w:
            raise ValueError(f"a 1-D mask must hold L = {h}x{w} = {h * w} values, got {mask.numel()}")
        mask = mask.reshape(h, w)
    elif mask.dim() == 2 and mask.shape[0] == batch_size and mask.shape[1] == h * w and (h, w) != tuple(mask.shape):
        mask = mask.reshape(batch_size, h, w)  # (B, L) flat latent masks
    elif mask.dim() == 4:
        if mask.shape[1] != 1:
            raise ValueError(f"a 4-D mask must be (B, 1, H, W), got shape {tuple(mask.shape)}")
        mask = mask[:, 0]
    elif mask.dim() > 4:
        raise ValueError(f"mask must be (H, W), (B, H, W), (B, 1, H, W) or (h*w,), got shape {tuple(mask.shape)}")
    small = latent_mask(mask, (h, w))  # (h, w) or (N, h, w)
    if small.dim() == 3 and small.shape[0] not in (1, batch_size):
        raise ValueError(f"mask holds {small.shape[0]} masks for a batch of {batch_size}")
    return small.reshape(-1, h * w).expand(batch_size, h * w).contiguous()  # (B, L)


def _clean_tokens(chain, images) -> torch.Tensor:
    """x_0 (B, L): encode images (B, 3, H, W) in [-1, 1], or check given tokens."""
    images = torch.as_tensor(images)
    if images.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
        x0 = images.to(chain.device).long()
        length = chain.latent_shape[0] * chain.latent_shape[1]
        if x0.dim() != 2 or x0.shape[1] != length:
            raise ValueError(f"x0 tokens must be (B, L={length}), got shape {tuple(x0.shape)}")
        if x0.min() < 0 or x0.max() >= chain.num_codes:
            raise ValueError(f"x0 tokens must lie in 0..{chain.num_codes - 1}, got "
                             f"{x0.min().item()}..{x0.max().item()}")
        return x0
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) in [-1, 1] (or x0 tokens (B, L)), got shape "
                         f"{tuple(images.shape)}")
    return chain.encode(images.to(chain.device).float())  # (B, L)


# editing


@torch.no_grad()
def edit(chain, images, mask, top_k: PerScale = None, temperature: PerScale = 1.0,
         chain_length: PerScale = 1, class_label=None, generator: Optional[torch.Generator] = None,
         progress: Optional[Progress] = None, return_intermediates: bool = False,
         use_cache: bool = True) -> EditResult:
    """Regenerate the masked-out region of ``images`` with ``chain`` (see the module docstring).

    images: (B, 3, H, W) in [-1, 1], or clean tokens x0 (B, L). mask: 1 = keep, 0 = edit, at
    image or token resolution: (H, W), (B, H, W), (B, 1, H, W), (h, w), or flat (L,) / (B, L).
    ``class_label`` (conditional chains): the target class, one per image, or "random".
    ``progress(t, step, steps)`` counts the token steps of all passes at scale t and is called
    once more with ``step == steps`` when the scale is done. With the same ``generator`` state,
    an all-edit mask and chain length 1 give exactly :meth:`ImageBARTChain.sample`'s tokens.
    """
    if generator is not None and generator.device.type != chain.device.type:
        raise ValueError(f"generator is on {generator.device}, the chain samples on {chain.device}; "
                         "use chain.make_generator(seed)")
    n_scales, num_codes = chain.n_scales, chain.num_codes
    length = chain.latent_shape[0] * chain.latent_shape[1]
    top_ks = chain.top_k_schedule(top_k)
    temperatures = chain.temperature_schedule(temperature)
    lengths = resolve_schedule(chain_length, n_scales, "chain_length", _check_chain_length)

    x0 = _clean_tokens(chain, images)  # (B, L)
    b = x0.shape[0]
    keep = _keep_mask(mask, b, chain.latent_shape).to(x0.device)  # (B, L)
    guide = keep_guide(x0, keep, num_codes)  # (B, L, K)
    labels = chain.class_tokens(class_label, b, generator)  # (B,) or None; drawn first, as sample() does
    cond = None if labels is None else labels[:, None]  # (B, 1)

    noise = torch.randint(0, num_codes, (b, length), generator=generator, device=x0.device)  # (B, L)
    x = torch.where(keep.bool(), x0, noise)  # x_T: noise where edited, x_0 where kept
    intermediates = [x] if return_intermediates else None
    for step, t in enumerate(range(n_scales, 0, -1)):
        model = chain.model_for_scale(t)
        scale = torch.full((b, 1), t, dtype=torch.long, device=x0.device)  # (B, 1)
        beta_t = float(model.temperature_range[t])  # the original read it at model.single_scale
        scale_guide = widen_guide(guide, keep, _output_vocabulary(model, num_codes))  # (B, L, V)
        n = lengths[step]
        for i in range(n):
            if i > 0:  # run the scale again on a partly re-noised copy of its own output
                x = renoise(x, (1.0 - i / n) * beta_t, num_codes, generator)
            callback = None
            if progress is not None:
                callback = (lambda j, t=t, i=i, n=n: progress(t, i * length + j, n * length))
            x = model.sample_single_scale(x, scale, None, steps=length, temperature=temperatures[step],
                                          top_k=top_ks[step], cond=cond, guide=scale_guide, generator=generator,
                                          use_cache=use_cache, callback=callback)  # x_{t-1} (B, L)
        if progress is not None:
            progress(t, n * length, n * length)
        if return_intermediates:
            intermediates.append(x)
    return EditResult(tokens=x, images=chain.decode(x).float(), x0=x0, mask=keep, intermediates=intermediates,
                      class_label=labels)


@torch.no_grad()
def reconstruct(chain, images: torch.Tensor):
    """(x0 tokens (B, L), decoded images): what an all-keep edit must return."""
    x0 = _clean_tokens(chain, images)
    return x0, chain.decode(x0)
