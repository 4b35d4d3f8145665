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

from imagebart.diffusion.multinomial import q_sample_chain, q_sample_step
from imagebart.sampling.schedules import resolve_schedule
from imagebart.sampling.masks import feathered, token_keep_mask
from imagebart.util import check_positive_int

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
    caption: Optional[list] = None  # the B captions used (text-conditional chains)


# helpers


def default_chain_lengths(redraw_prob, n_scales: int) -> list:
    """The original app's defaults, in sampling order: 3 per scale for the geometric schedule,
    otherwise 1 for the last scale T and 5 for the others."""
    if redraw_prob == "geometric":
        return [3] * n_scales
    return [1] + [5] * (n_scales - 1)


def _clean_tokens(chain, images) -> torch.Tensor:
    """x_0 (B, L): encode images (B, 3, H, W) in [-1, 1], or check given tokens."""
    images = torch.as_tensor(images)
    if images.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
        x0 = images.to(chain.device).long()
        length = chain.tokens_per_image
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
         use_cache: bool = True, guidance_scale: PerScale = 1.0, caption=None, gamma: PerScale = None) -> EditResult:
    """Regenerate the masked-out region of ``images`` with ``chain`` (see the module docstring).

    images: (B, 3, H, W) in [-1, 1], or clean tokens x0 (B, L). mask: 1 = keep, 0 = edit, at
    image or token resolution: (H, W), (B, H, W), (B, 1, H, W), (h, w), or flat (L,) / (B, L).
    ``class_label`` (conditional chains): the target class, one per image, or "random";
    ``caption`` (text-conditional chains): the new caption, one or one per image, so the whole image
    matches it (text-guided local modification). ``guidance_scale`` (per scale, sampling order)
    steers the edit towards the class or caption by classifier-free guidance. ``gamma``: drafts per
    decoder pass, as in :meth:`ImageBARTChain.sample`; kept positions are drafts accepted for sure.
    ``progress(t, step, steps)`` counts the token steps of all passes at scale t and is called
    once more with ``step == steps`` when the scale is done. With the same ``generator`` state,
    an all-edit mask and chain length 1 give exactly :meth:`ImageBARTChain.sample`'s tokens.
    """
    if generator is not None and generator.device.type != chain.device.type:
        raise ValueError(f"generator is on {generator.device}, the chain samples on {chain.device}; "
                         "use chain.make_generator(seed)")
    n_scales, num_codes = chain.n_scales, chain.num_codes
    length = chain.tokens_per_image
    top_ks = chain.top_k_schedule(top_k)
    temperatures = chain.temperature_schedule(temperature)
    guidances = chain.guidance_schedule(guidance_scale)
    gammas = chain.gamma_schedule(gamma)
    lengths = resolve_schedule(chain_length, n_scales, "chain_length",
                               lambda n: check_positive_int("chain_length values", n))

    x0 = _clean_tokens(chain, images)  # (B, L)
    b = x0.shape[0]
    keep = token_keep_mask(mask, b, chain.latent_shape).to(x0.device)  # (B, L) bool
    known = torch.where(keep, x0, -1)  # (B, L): the tokens every scale keeps, -1 where it samples
    cond, labels, captions = chain.condition(class_label, caption, b, generator)  # drawn first, as sample() does

    noise = torch.randint(0, num_codes, (b, length), generator=generator, device=x0.device)  # (B, L)
    x = torch.where(keep, x0, noise)  # x_T: noise where edited, x_0 where kept
    intermediates = [x] if return_intermediates else None
    for step, t in enumerate(range(n_scales, 0, -1)):
        model = chain.model_for_scale(t)
        t_batch = torch.full((b,), t, dtype=torch.long, device=x0.device)  # (B,)
        beta_t = float(model.schedule.betas[t])  # the original read it at model.single_scale
        n = lengths[step]
        for i in range(n):
            if i > 0:  # run the scale again on a partly re-noised copy of its own output
                x = q_sample_step(x, (1.0 - i / n) * beta_t, num_codes, generator)
            callback = None
            if progress is not None:
                callback = (lambda j, t=t, i=i, n=n: progress(t, i * length + j, n * length))
            x = model.sample_x_prev(x, t_batch, cond, temperature=temperatures[step], top_k=top_ks[step],
                                    known=known, generator=generator, use_cache=use_cache, gamma=gammas[step],
                                    callback=callback, guidance_scale=guidances[step])  # x_{t-1} (B, L)
        if progress is not None:
            progress(t, n * length, n * length)
        if return_intermediates:
            intermediates.append(x)
    return EditResult(tokens=x, images=chain.decode(x).float(), x0=x0, mask=keep.float(), intermediates=intermediates,
                      class_label=labels, caption=captions)


@torch.no_grad()
def denoise_from(chain, images, t: int, generator: Optional[torch.Generator] = None, **sample_kwargs) -> torch.Tensor:
    """x_0 -> x_t by the forward process q, then the chain's scales t..1 -> images (B, 3, H, W).

    What a chain keeps of an image it sees only through x_t: a diagnostic of each scale's denoising
    (t = 1 tests scale 1 alone; t = T is plain sampling, since x_T is noise for β_T = 1)."""
    if not isinstance(t, int) or not 1 <= t <= chain.n_scales:
        raise ValueError(f"t must be an int in 1..{chain.n_scales}, got {t!r}")
    x0 = _clean_tokens(chain, images)  # (B, L)
    x = q_sample_chain(x0, chain.models[0].schedule, chain.num_codes, t_max=t, generator=generator)[t]  # x_t
    for s in range(t, 0, -1):
        model = chain.model_for_scale(s)
        x = model.sample_x_prev(x, torch.full((len(x),), s, dtype=torch.long, device=x.device), None,
                                generator=generator, top_k=model.resolve_top_k(None), **sample_kwargs)
    return chain.decode(x).float()


@torch.no_grad()
def reconstruct(chain, images: torch.Tensor):
    """(x0 tokens (B, L), decoded images): what an all-keep edit must return."""
    x0 = _clean_tokens(chain, images)
    return x0, chain.decode(x0)


def paste_back(original: torch.Tensor, edited: torch.Tensor, mask, feather: int = 2) -> torch.Tensor:
    """Composite the original pixels (B, 3, H, W) back where the mask keeps them, with a seam feathered
    over ``feather`` pixels: the VQGAN's decode softens kept regions, the user's pixels do not."""
    if original.shape[-2:] != edited.shape[-2:]:
        raise ValueError(f"original {tuple(original.shape)} and edited {tuple(edited.shape)} images differ in size")
    keep = feathered(torch.as_tensor(mask), feather).to(edited)  # (H, W) or (B, H, W), 1 = original
    if keep.shape[-2:] != edited.shape[-2:]:
        raise ValueError(f"mask of size {tuple(keep.shape[-2:])} does not match images of size "
                         f"{tuple(edited.shape[-2:])}; paste back with the image-resolution mask")
    keep = keep.reshape(-1, 1, *keep.shape[-2:])  # (1 or B, 1, H, W)
    return keep * original.to(edited) + (1.0 - keep) * edited
