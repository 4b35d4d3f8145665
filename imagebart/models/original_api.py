"""The original release's public names on a denoiser, as thin wrappers over ours.

Users of the original call ``get_scales``, ``compute_loss``, ``sample``, ``sample_single_scale``,
``decode_to_img``, ``init_from_ckpt`` and read ``temperature_range`` (β), ``alphats`` and
``alphacum``. They keep working with the original's shapes and argument orders; the package
itself uses :meth:`corrupt`, :meth:`shared_step`, :meth:`sample_x_prev` and :meth:`decode_tokens`.

Legend: B batch, L tokens per image (h·w), K codes.
"""

from __future__ import annotations

import torch

from imagebart.diffusion.losses import denoising_loss
from imagebart.loading import load_weights, read_state_dict
from imagebart.modules.autoregressive import sample_tokens


class OriginalDenoiserAPI:
    """Mixed into :class:`~imagebart.models.diffusion.DenoisingTransformer`."""

    @property
    def temperature_range(self) -> torch.Tensor:
        """β_0..β_T under the original's (misleading) name."""
        return self.schedule.betas

    @property
    def alphats(self) -> torch.Tensor:
        """α_0..α_T under the original's name."""
        return self.schedule.alphas

    @property
    def alphacum(self) -> torch.Tensor:
        """ᾱ_0..ᾱ_T under the original's name."""
        return self.schedule.alphas_cumprod

    def init_from_ckpt(self, path, ignore_keys=()):
        """Load a denoiser checkpoint (ours or the original's) non-strictly, reporting what differs."""
        load_weights(self, read_state_dict(path, ignore_keys), path)

    @torch.no_grad()
    def get_scales(self, pre_quant, force_random=False):
        """The original's ``(zq_x, zq_c, x_prev, x_t, t (B, 1), None, posterior (B, K, h, w))``."""
        b, _, h, w = pre_quant.shape
        t = self.draw_scales(b, pre_quant.device, force_random)  # (B,)
        _, _, info = self.first_stage_model.quantize(pre_quant)
        x_prev, x_t, t, posterior = self.corrupt(info[2].reshape(b, -1), t)
        codebook = self.first_stage_model.quantize.get_codebook_entry
        qshape = (b, h, w, self.first_stage_model.quantize.e_dim)
        return (codebook(x_prev.reshape(-1), qshape), codebook(x_t.reshape(-1), qshape), x_prev, x_t, t[:, None],
                None, posterior.transpose(1, 2).reshape(b, -1, h, w))

    def compute_loss(self, logits, targets, target_logits, temperature=None, recp_loss_weights=None, split="train"):
        """alpha·KL(posterior ‖ p_θ) + (1-alpha)·CE; the posterior as (B, L, K) or the original's (B, K, h, w)."""
        if target_logits.dim() == 4:
            target_logits = target_logits.flatten(2).transpose(1, 2)  # (B, L, K)
        loss, parts = denoising_loss(logits, targets, target_logits, self.alpha)
        return loss, {f"{split}/loss": loss.detach(), f"{split}/loss_hard": parts["loss_hard"],
                      f"{split}/loss_soft": parts["loss_soft"]}

    @torch.no_grad()
    def sample(self, x, c, steps, temperature=1.0, sample=False, top_k=None, callback=None, **kwargs):
        """The original's loop: c = the full network condition (for the GPT, ``[c, x]`` with x the
        (B, 0) start); ``sample=False`` decodes greedily. Returns (B, steps) tokens."""
        condition = c if self.transformer.reads_x_t else torch.cat((c, x), dim=1)
        return sample_tokens(self.transformer, condition, steps, temperature=temperature, top_k=top_k,
                             guide=kwargs.get("guide"), greedy=not sample, generator=kwargs.get("generator"),
                             use_cache=kwargs.get("use_cache", self.use_past_for_sampling), callback=callback)

    @torch.no_grad()
    def sample_single_scale(self, c_indices, scale, temp_x, steps, temperature=None, callback=None,
                            top_k=None, cond=None, guide=None, generator=None, use_cache=True, gamma=0):
        """The original's name for :meth:`sample_x_prev` (x_t = ``c_indices``, t = ``scale``);
        ``top_k=None`` means the config's ``top_k`` (the original silently used 100). Token by token
        by default, so a seed draws what the original draws; ``gamma`` > 0 verifies x_t drafts."""
        if temp_x is not None:
            raise ValueError("temp_x is not supported (the original dropped it too)")
        return self.sample_x_prev(c_indices, scale, cond, temperature=1.0 if temperature is None else temperature,
                                  top_k=self.resolve_top_k(top_k), guide=guide, generator=generator,
                                  use_cache=use_cache, callback=callback, steps=steps, gamma=gamma)

    @torch.no_grad()
    def decode_to_img(self, index, zshape):
        """The original's name for :meth:`decode_tokens`; zshape = (B, C, h, w) of the latents."""
        return self.decode_tokens(index.reshape(zshape[0], -1))
