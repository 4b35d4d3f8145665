"""Incremental decoding over an x-transformers ``Decoder``'s own modules, with static caches.

x-transformers' cached path is general (memory tokens, rotary, gating, …) and concatenates its
self-attention cache at every step, which costs a decode step at batch 1 about twice the time of
reading the decoder's weights. This path runs the same modules for the layer kinds our denoisers
use (pre-norm self-attention, cross-attention and feed-forward blocks with plain residuals):
self-attention keys / values go into buffers allocated once, cross-attention keys / values are
computed once from the encoder states, and rewinding moves a length. It is only ever used after
:func:`matches_generic` has found its logits equal to the generic path's for the network at hand;
any other configuration decodes through x-transformers.

einops axes: b batch, h heads, n new positions, s encoder positions, t cached positions, d width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from x_transformers.x_transformers import Attention, FeedForward, Residual


def supports(decoder) -> bool:
    """Whether every layer is one this path implements (the logits are compared before use too)."""
    layers = decoder.attn_layers
    needed = ("token_emb", "pos_emb", "post_emb_norm", "project_emb", "emb_dropout", "to_logits", "max_seq_len")
    if not all(hasattr(decoder, name) for name in needed) or not hasattr(layers, "final_norm"):
        return False  # an x-transformers version laid out otherwise
    if not getattr(layers, "pre_norm", False) or getattr(decoder, "memory_tokens", None) is not None:
        return False
    if any(getattr(layers, name, None) is not None for name in ("rotary_pos_emb", "rel_pos")):
        return False  # positions inside attention: not implemented here
    if any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in decoder.modules()):
        return False  # dynamic int8 quantises activations per call: a block's logits differ from the full pass's
    for (norms, block, residual), kind in zip(layers.layers, layers.layer_types):
        if kind not in ("a", "c", "f") or type(residual) is not Residual or norms[1] is not None or norms[2] is not None:
            return False
        if kind in ("a", "c") and not isinstance(block, Attention) or kind == "f" and not isinstance(block, FeedForward):
            return False
    return True


class LeanDecoderState:
    """Per-scale state: encoder keys / values per cross-attention layer and the self-attention buffers."""

    def __init__(self, decoder, context: torch.Tensor, context_mask: torch.Tensor | None):
        self.decoder, self.length = decoder, 0
        self.cross, self.buffers = {}, {}
        self.context_mask = None if context_mask is None else context_mask[:, None, None, :]  # (b, 1, 1, s)
        for index, ((_, block, _), kind) in enumerate(zip(decoder.attn_layers.layers, decoder.attn_layers.layer_types)):
            if kind == "c":
                self.cross[index] = (self._heads(block, block.to_k(context)), self._heads(block, block.to_v(context)))

    @staticmethod
    def _heads(block, x):
        return rearrange(x, "b n (h d) -> b h n d", h=block.heads)

    def _self_attention(self, index: int, block, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (self._heads(block, f(x)) for f in (block.to_q, block.to_k, block.to_v))  # (b, h, n, d)
        if index not in self.buffers:
            b, h, _, d = k.shape
            self.buffers[index] = k.new_empty(2, b, h, self.decoder.max_seq_len, d)
        kv, start, end = self.buffers[index], self.length, self.length + x.shape[1]
        kv[0, :, :, start:end], kv[1, :, :, start:end] = k, v
        mask = None
        if x.shape[1] > 1:  # causal within the new block, everything cached before it
            mask = torch.ones(x.shape[1], end, dtype=torch.bool, device=x.device).tril(diagonal=start)  # (n, t)
        out = F.scaled_dot_product_attention(q, kv[0, :, :, :end], kv[1, :, :, :end], attn_mask=mask,
                                             scale=block.attend.scale)
        return block.to_out(rearrange(out, "b h n d -> b n (h d)"))

    def _cross_attention(self, index: int, block, x: torch.Tensor) -> torch.Tensor:
        k, v = self.cross[index]
        out = F.scaled_dot_product_attention(self._heads(block, block.to_q(x)), k, v, attn_mask=self.context_mask,
                                             scale=block.attend.scale)
        return block.to_out(rearrange(out, "b h n d -> b n (h d)"))

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (b, n, K) of the decoder inputs ``tokens`` (b, n) at positions length..length+n-1."""
        decoder = self.decoder
        x = decoder.token_emb(tokens)  # (b, n, d)
        x = x + decoder.pos_emb(x, offset=self.length)
        x = decoder.emb_dropout(decoder.project_emb(decoder.post_emb_norm(x)))
        for index, ((norms, block, residual), kind) in enumerate(zip(decoder.attn_layers.layers,
                                                                     decoder.attn_layers.layer_types)):
            branch = norms[0](x)
            if kind == "a":
                branch = self._self_attention(index, block, branch)
            elif kind == "c":
                branch = self._cross_attention(index, block, branch)
            else:
                branch = block(branch)
            x = residual(branch, x)
        self.length += tokens.shape[1]
        return decoder.to_logits(decoder.attn_layers.final_norm(x))

    def rewind(self, n: int) -> None:
        self.length -= max(n, 0)


def matches_generic(generic_logits: torch.Tensor, lean_logits: torch.Tensor) -> bool:
    """The lean path's first logits against x-transformers' own for the same inputs."""
    scale = generic_logits.abs().max().clamp_min(1.0)
    return bool(((generic_logits - lean_logits).abs().max() <= 1e-4 * scale).item())
