"""Incremental decoding over an x-transformers ``Decoder``'s own modules, with static caches.

x-transformers' cached path is general (memory tokens, rotary, gating, …) and concatenates its
self-attention cache at every step, which costs a decode step at batch 1 about twice the time of
reading the decoder's weights. This path runs the same modules for the layer kinds our denoisers
use (pre-norm self-attention, cross-attention and feed-forward blocks with plain residuals):
self-attention keys / values go into buffers allocated once, cross-attention keys / values are
computed once from the encoder states, the three self-attention projections run as one matrix
(concatenated once per scale, in the weights' own layout), norms, feed-forwards and residuals are
called directly where they are the plain kinds (at batch 1 a step's time beyond reading the weights
is mostly per-call overhead), and rewinding moves a length. It is only ever used after
:func:`matches_generic` has found its logits equal to the generic path's for the network at hand;
any other configuration decodes through x-transformers.

einops axes: b batch, h heads, n new positions, s encoder positions, t cached positions, d width.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from x_transformers.x_transformers import Attention, FeedForward, LayerNorm, Residual

from imagebart.modules import static_decoding


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
        if kind == "a" and len({getattr(f, "out_features", None) for f in (block.to_q, block.to_k, block.to_v)}) != 1:
            return False  # grouped keys / values or other value widths: q, k, v are read as three equal parts
    return True


def _heads(block, x: torch.Tensor, b: int, n: int) -> torch.Tensor:
    """(b·n, h·d) or (b, n, h·d) -> (b, h, n, d); a view, cheaper per step than an einops pattern."""
    return x.view(b, n, block.heads, -1).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(b, h, n, d) -> (b·n, h·d)."""
    return x.transpose(1, 2).reshape(-1, x.shape[1] * x.shape[3])


def _direct_norm(norm):
    """x-transformers' LayerNorm (an affine-free norm times gamma + offset) as one ``F.layer_norm``
    with the gain folded in; any other norm module as itself. A step runs one norm per layer, and
    each call saved is a few microseconds at batch 1."""
    ln = getattr(norm, "ln", None)
    if type(norm) is not LayerNorm or not isinstance(ln, torch.nn.LayerNorm) or ln.elementwise_affine:
        return norm
    gain = (norm.gamma + float(norm.unit_offset)).detach()
    return partial(F.layer_norm, normalized_shape=ln.normalized_shape, weight=gain, bias=None, eps=ln.eps)


def _direct_feedforward(block):
    """The feed-forward's modules in order, without the nesting and the eval-time no-ops (dropout,
    identity); the block itself where it holds anything else (GLU, post-activation norms, ...)."""
    flat = []
    for module in block.ff.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.GELU)):
            flat.append(module)
        elif not isinstance(module, (torch.nn.Sequential, torch.nn.Dropout, torch.nn.Identity)):
            return [block]
    return flat


def _plain_residual(residual) -> bool:
    return getattr(residual, "residual_scale", None) is None and getattr(residual, "scale_residual_constant", 1) == 1


def fused_projection(*linears):
    """(weight, bias or None, output sizes) of ``linears`` stacked into one matrix, so a step reads
    them in one product instead of three. The copy keeps the first weight's layout (column-major
    on the CPU, see :mod:`imagebart.sampling.layout`), where a matvec streams fastest."""
    weights = [layer.weight for layer in linears]
    if weights[0].stride() == (1, weights[0].shape[0]) and not weights[0].is_contiguous():  # column-major
        weight = torch.cat([w.t() for w in weights], dim=1).t()  # (out, in), strides (1, out)
    else:
        weight = torch.cat(weights, dim=0)
    biases = [layer.bias for layer in linears]
    bias = None
    if any(b is not None for b in biases):
        bias = torch.cat([b if b is not None else w.new_zeros(w.shape[0]) for b, w in zip(biases, weights)])
    return weight, bias, [w.shape[0] for w in weights]


def step_matrices(decoder, fused: bool = True) -> list:
    """(weight, bias) of every matrix a lean decode step reads, in the order it reads them: q, k, v (stacked
    when ``fused``, as the step reads them) and the output of self-attention, q and output of
    cross-attention (its keys and values come from the encoder once per scale), the feed-forward
    matrices, the logits layer. What a weight-read bound must stream once per step."""
    matrices = []
    for (_, block, _), kind in zip(decoder.attn_layers.layers, decoder.attn_layers.layer_types):
        if kind == "a":
            if fused:
                matrices.append(fused_projection(block.to_q, block.to_k, block.to_v)[:2])
            else:
                matrices += [(f.weight, f.bias) for f in (block.to_q, block.to_k, block.to_v)]
            matrices.append((block.to_out.weight, block.to_out.bias))
        elif kind == "c":
            matrices += [(f.weight, f.bias) for f in (block.to_q, block.to_out)]
        else:
            matrices += [(m.weight, m.bias) for m in block.modules() if isinstance(m, torch.nn.Linear)]
    return matrices + [(decoder.to_logits.weight, decoder.to_logits.bias)]


class LeanDecoderState:
    """Per-scale state: encoder keys / values per cross-attention layer and the self-attention buffers.

    ``compiler`` (a :class:`~imagebart.modules.static_decoding.StepCompiler` of :func:`static_step`):
    steps after the first run with the positions as a tensor over the whole buffers, compiled."""

    def __init__(self, decoder, context: torch.Tensor, context_mask: torch.Tensor | None, compiler=None):
        self.decoder, self.length, self.compiler, self._marked = decoder, 0, compiler, False
        self.cross, self.buffers, self.projections = {}, {}, {}
        self.context_mask = None if context_mask is None else context_mask[:, None, None, :].contiguous()  # (b, 1, 1, s)
        self.layers = []  # (index, kind, norm, block or feed-forward modules, residual module or None if plain)
        for index, ((norms, block, residual), kind) in enumerate(zip(decoder.attn_layers.layers,
                                                                     decoder.attn_layers.layer_types)):
            if kind == "c":  # contiguous per head: every step streams them (about 1 ms a step faster on FFHQ sizes)
                self.cross[index] = tuple(_heads(block, f(context), *context.shape[:2]).contiguous()
                                          for f in (block.to_k, block.to_v))
            elif kind == "a":
                self.projections[index] = fused_projection(block.to_q, block.to_k, block.to_v)
            modules = _direct_feedforward(block) if kind == "f" else block
            self.layers.append((index, kind, _direct_norm(norms[0]), modules, None if _plain_residual(residual) else residual))
        self.final_norm = _direct_norm(decoder.attn_layers.final_norm)

    def _self_attention(self, index: int, block, x: torch.Tensor, b: int, n: int,
                        positions: torch.Tensor | None) -> torch.Tensor:
        weight, bias, _ = self.projections[index]
        qkv = F.linear(x, weight, bias).view(b, n, 3, block.heads, -1).permute(2, 0, 3, 1, 4)  # (3, b, h, n, d)
        q = qkv[0]
        if index not in self.buffers:  # zeros: the static step multiplies masked entries by 0
            self.buffers[index] = q.new_zeros(2, b, block.heads, self.decoder.max_seq_len, q.shape[-1])
        kv = self.buffers[index]  # (2, b, h, t, d)
        if positions is not None:  # static: the whole buffer, masked by position
            static_decoding.write(kv, qkv[1:], positions)
            keys, values, mask = kv[0], kv[1], static_decoding.visible(positions, kv.shape[3])
        else:
            start, end = self.length, self.length + n
            kv[:, :, :, start:end] = qkv[1:]  # keys and values in one copy
            keys, values, mask = kv[0, :, :, :end], kv[1, :, :, :end], None
            if n > 1:  # causal within the new block, everything cached before it
                mask = torch.ones(n, end, dtype=torch.bool, device=x.device).tril(diagonal=start)  # (n, t)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=block.attend.scale)
        return block.to_out(_merge_heads(out))

    def _cross_attention(self, index: int, block, x: torch.Tensor, b: int, n: int) -> torch.Tensor:
        k, v = self.cross[index]
        out = F.scaled_dot_product_attention(_heads(block, block.to_q(x), b, n), k, v, attn_mask=self.context_mask,
                                             scale=block.attend.scale)
        return block.to_out(_merge_heads(out))

    def run(self, tokens: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (b, n, K) of ``tokens`` (b, n) at ``positions`` (n,), or at length.. when None; the
        length is the caller's to move. Between the layers the activations are (b·n, d): a linear layer
        of a matrix is one BLAS call, without the reshapes a (b, n, d) input costs."""
        decoder, (b, n) = self.decoder, tokens.shape
        x = decoder.token_emb(tokens)  # (b, n, d)
        x = x + (decoder.pos_emb(x, offset=self.length) if positions is None else decoder.pos_emb(x, pos=positions))
        x = decoder.emb_dropout(decoder.project_emb(decoder.post_emb_norm(x))).reshape(b * n, -1)  # (b·n, d)
        for index, kind, norm, block, residual in self.layers:
            branch = norm(x)
            if kind == "a":
                branch = self._self_attention(index, block, branch, b, n, positions)
            elif kind == "c":
                branch = self._cross_attention(index, block, branch, b, n)
            else:
                for module in block:
                    branch = module(branch)
            x = x + branch if residual is None else residual(branch, x)
        return decoder.to_logits(self.final_norm(x)).view(b, n, -1)  # (b, n, K)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (b, n, K) of the decoder inputs ``tokens`` (b, n) at positions length..length+n-1."""
        n = tokens.shape[1]
        if self.compiler is None or not self.buffers:  # the first call allocates the buffers eagerly
            logits = self.run(tokens)
        else:
            if not self._marked:
                static_decoding.mark_static(self.static_tensors())
                self._marked = True
            positions = static_decoding.new_positions(self.length, n, tokens.device)
            logits = self.compiler(n, tokens.device, self, tokens, positions)
        self.length += n
        return logits

    def static_tensors(self) -> list:
        """What a compiled step reads or writes in place besides its inputs (all contiguous: they are
        marked as static addresses on CUDA)."""
        tensors = [self.context_mask, *self.buffers.values()]
        for pair in self.cross.values():
            tensors += list(pair)
        for weight, bias, _ in self.projections.values():
            tensors += [weight, bias]
        norms = [norm for _, _, norm, _, _ in self.layers] + [self.final_norm]
        tensors += [norm.keywords["weight"] for norm in norms if isinstance(norm, partial)]  # folded gains
        return tensors

    def rewind(self, n: int) -> None:
        self.length -= max(n, 0)


def static_step(state: LeanDecoderState, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The function compiled: one step with the positions as a tensor."""
    return state.run(tokens, positions)


def matches_generic(generic_logits: torch.Tensor, lean_logits: torch.Tensor) -> bool:
    """The lean path's first logits against x-transformers' own for the same inputs."""
    scale = generic_logits.abs().max().clamp_min(1.0)
    return bool(((generic_logits - lean_logits).abs().max() <= 1e-4 * scale).item())
