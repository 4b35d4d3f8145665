"""minGPT: the decoder-only denoiser of the last scale, p_θ(x_{T-1} | T, cond).

Parameter names are minGPT's (``tok_emb``, ``pos_emb``, ``blocks.i.ln1/ln2/attn.key/query/
value/proj/mask``, ``blocks.i.mlp.0/2``, ``ln_f``, ``head``) so the release's checkpoints load
with ``strict=True``. Attention runs through ``torch.nn.functional.scaled_dot_product_attention``;
:meth:`GPT.forward_with_past` decodes incrementally with a K/V cache.

As the denoiser of the last scale it implements the denoising-network interface of
:mod:`imagebart.modules.xtransformers.x_transformer` with ``condition`` = the prefix
``[T, (cond…)]``: x_T is pure noise there, so it is not read (``reads_x_t = False``).

Shapes: b batch, n positions, h heads, e = n_embd / h, c channels (n_embd), k vocabulary.
"""

from __future__ import annotations

import logging
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from imagebart.modules import static_decoding
from imagebart.modules.static_decoding import StepCompiler

logger = logging.getLogger(__name__)


def layers_from_width(d: int, a: float = 5.039, b: float = 5.55e-2) -> float:
    """Depth suggested for width d by https://arxiv.org/abs/2006.12467 (the original's helper)."""
    return (math.log(d) - a) / b


def attention_mask(block_size: int, n_unmasked: int = 0) -> torch.Tensor:
    """1 where position i may attend to j: causal, plus a bidirectional block over the first
    ``n_unmasked`` positions (the conditioning prefix). Shape (1, 1, block_size, block_size)."""
    mask = torch.tril(torch.ones(block_size, block_size))
    mask[:n_unmasked, :n_unmasked] = 1
    return mask.view(1, 1, block_size, block_size)


def _key_mask(condition_mask: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """(b, length) keys that may be attended to: the prefix's mask, then every later position.

    The prefix's last position predicts the first token, so it must be visible: conditioners pad
    on the left (``[T, pad…, tokens…]``)."""
    if condition_mask is None:
        return None
    if not bool(condition_mask[:, -1].all()):
        raise ValueError("the last position of a decoder-only prefix predicts the first token and cannot be "
                         "padding: pad conditions on the left")
    rest = condition_mask.new_ones(condition_mask.shape[0], length - condition_mask.shape[1])
    return torch.cat((condition_mask.bool(), rest), dim=1)


class KVCache:
    """Keys and values of every layer for ``block_size`` positions, allocated once (at the first
    write, in the dtype of the keys, so autocast is respected) and filled in place; ``length``
    positions are valid, so rewinding is moving it."""

    def __init__(self, block_size: int):
        self.block_size, self.length, self.layers, self.marked = block_size, 0, {}, False

    def layer(self, i: int, like: torch.Tensor) -> torch.Tensor:
        """Layer i's buffer (2, b, h, block_size, e), for keys shaped like ``like`` (b, h, n, e)."""
        if i not in self.layers:
            b, h, _, e = like.shape
            self.layers[i] = like.new_zeros(2, b, h, self.block_size, e)  # zeros: static steps mask by 0 x entry
        return self.layers[i]


class CausalSelfAttention(nn.Module):
    """Multi-head masked self-attention with a projection at the end (biases everywhere)."""

    def __init__(self, n_embd: int, n_head: int, block_size: int, attn_pdrop: float = 0.0,
                 resid_pdrop: float = 0.0, n_unmasked: int = 0):
        super().__init__()
        if n_embd % n_head != 0:
            raise ValueError(f"n_embd={n_embd} must be divisible by n_head={n_head}")
        self.key = nn.Linear(n_embd, n_embd)
        self.query = nn.Linear(n_embd, n_embd)
        self.value = nn.Linear(n_embd, n_embd)
        self.attn_pdrop = attn_pdrop
        self.resid_drop = nn.Dropout(resid_pdrop)
        self.proj = nn.Linear(n_embd, n_embd)
        # persistent: the release's checkpoints store it
        self.register_buffer("mask", attention_mask(block_size, n_unmasked))
        self.n_head = n_head
        self.n_unmasked = n_unmasked

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.n_head, c // self.n_head).transpose(1, 2)  # (b, h, n, e)

    def forward(self, x: torch.Tensor, layer_past: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None):
        """Attention output for ``x`` (b, n, c) and this call's K/V ``present`` (2, b, h, n, e).

        With ``layer_past`` (2, b, h, p, e) the n new positions are p..p+n-1 and attend to the
        cached ones as well. ``key_mask`` (b, p+n) bool: False at padding, which nothing attends to.
        """
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        present = torch.stack((k, v))  # (2, b, h, n, e)
        past_len = 0
        if layer_past is not None:
            past_len = layer_past.shape[-2]
            k = torch.cat((layer_past[0], k), dim=-2)  # (b, h, p+n, e)
            v = torch.cat((layer_past[1], v), dim=-2)
        return self._attend(q, k, v, past_len, key_mask), present

    def step(self, x: torch.Tensor, cache: "KVCache", layer: int, key_mask: torch.Tensor | None = None,
             positions: torch.Tensor | None = None):
        """Incremental decoding into a preallocated cache: this call's K/V are written in place at
        positions ``cache.length``.., no concatenation. Output (b, n, c). With ``positions`` (n,)
        (a compiled step, see :mod:`~imagebart.modules.static_decoding`) they go there and the
        queries attend over the whole buffer, masked; ``key_mask`` then covers all block_size keys."""
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        kv = cache.layer(layer, k)  # (2, b, h, block_size, e)
        if positions is not None:
            static_decoding.write(kv, torch.stack((k, v)), positions)
            mask = static_decoding.visible(positions, kv.shape[3], key_mask)  # (n, t) or (b, 1, n, t)
            y = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask)  # (b, h, n, e)
            return self.resid_drop(self.proj(y.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)))
        start, end = cache.length, cache.length + x.shape[1]
        kv[0, :, :, start:end], kv[1, :, :, start:end] = k, v
        return self._attend(q, kv[0, :, :, :end], kv[1, :, :, :end], start, key_mask)

    def _attend(self, q, k, v, past_len: int, key_mask):
        """Scaled dot-product attention of the n new queries over the p+n keys, then the projection."""
        b, _, n, _ = q.shape
        attn_mask, is_causal = None, False
        if n > 1:  # a single new query may see every cached position anyway
            if past_len == 0 and self.n_unmasked == 0 and key_mask is None:
                is_causal = True
            else:
                attn_mask = self.mask[0, 0, past_len:past_len + n, :past_len + n].bool()  # (n, p+n)
        if key_mask is not None:
            keys = key_mask[:, None, None, :]  # (b, 1, 1, p+n)
            attn_mask = keys if attn_mask is None else attn_mask & keys  # (b, 1, n, p+n)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=is_causal,
            dropout_p=self.attn_pdrop if self.training else 0.0,
        )  # (b, h, n, e)
        y = y.transpose(1, 2).reshape(b, n, -1)  # (b, n, c)
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, n_embd: int, n_head: int, block_size: int, attn_pdrop: float = 0.0,
                 resid_pdrop: float = 0.0, n_unmasked: int = 0):
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd)
        self.ln2 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size, attn_pdrop, resid_pdrop,
                                        n_unmasked)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd),
            nn.GELU(),
            nn.Linear(4 * n_embd, n_embd),
            nn.Dropout(resid_pdrop),
        )

    def forward(self, x: torch.Tensor, layer_past: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None):
        attn, present = self.attn(self.ln1(x), layer_past=layer_past, key_mask=key_mask)
        x = x + attn
        x = x + self.mlp(self.ln2(x))
        return x, present

    def step(self, x: torch.Tensor, cache: "KVCache", layer: int, key_mask: torch.Tensor | None = None,
             positions: torch.Tensor | None = None):
        x = x + self.attn.step(self.ln1(x), cache, layer, key_mask, positions)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """GPT over ``[T, (cond…), x_{T-1}]`` with a context of ``block_size`` positions.

    ``input_vocab_size`` (ImageNet configs: 1000) lets the input vocabulary, which also holds
    the scale and class tokens, be larger than the ``vocab_size`` codes predicted.
    ``n_unmasked`` positions at the start attend to each other bidirectionally.
    """

    def __init__(self, vocab_size: int, block_size: int, n_layer: int = 12, n_head: int = 8,
                 n_embd: int = 256, embd_pdrop: float = 0.0, resid_pdrop: float = 0.0,
                 attn_pdrop: float = 0.0, n_unmasked: int = 0, input_vocab_size: int | None = None,
                 autoset_layers: bool = False):
        super().__init__()
        recommended = int(round(layers_from_width(n_embd)))
        if autoset_layers:
            n_layer = recommended
        logger.info("GPT: width %d, %d layers (arXiv 2006.12467 suggests %d)", n_embd, n_layer,
                    recommended)
        self.vocab_size = vocab_size
        self.block_size = block_size
        self.n_layer, self.n_head, self.n_embd = n_layer, n_head, n_embd
        self.n_unmasked = n_unmasked

        self.tok_emb = nn.Embedding(input_vocab_size or vocab_size, n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, block_size, n_embd))
        self.drop = nn.Dropout(embd_pdrop)
        self.blocks = nn.Sequential(*[
            Block(n_embd, n_head, block_size, attn_pdrop, resid_pdrop, n_unmasked)
            for _ in range(n_layer)
        ])
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.apply(self._init_weights)

    def get_block_size(self) -> int:
        return self.block_size

    # the denoising-network interface

    reads_x_t = False  # x_T is pure noise: the prefix is [T, (cond…)] only

    @property
    def input_vocabulary(self) -> int:
        """Token ids the embedding reads: scale, class and code tokens share them."""
        return self.tok_emb.num_embeddings

    @property
    def output_vocabulary(self) -> int:
        """K, the number of codes predicted."""
        return self.vocab_size

    vocabulary_keys = ("input_vocab_size (or vocab_size)", "vocab_size")  # config keys named in errors

    def check_fits(self, length: int, n_cond: int) -> None:
        """``[T, cond x n_cond, x_(T-1)[:-1]]`` must fit in ``block_size``."""
        if self.block_size < n_cond + length:
            raise ValueError(f"transformer_config.params.block_size={self.block_size} cannot hold "
                             f"[T, cond x{n_cond}, x_(T-1)[:-1]] = {n_cond + length} tokens")

    def teacher_forced(self, condition: torch.Tensor, x_prev: torch.Tensor,
                       condition_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (b, n, k): position j predicts x_prev[:, j] from the prefix and x_prev[:, :j].
        ``condition_mask`` (b, C) bool: False at padding in the prefix, which nothing attends to."""
        idx = torch.cat((condition, x_prev), dim=1)[:, :-1]  # (b, C+n-1)
        logits, _ = self(idx, key_mask=_key_mask(condition_mask, idx.shape[1]))
        return logits[:, condition.shape[1] - 1:]

    @torch.no_grad()
    def decode_step(self, condition: torch.Tensor, new: torch.Tensor, cache: KVCache | None = None,
                    condition_mask: torch.Tensor | None = None):
        """Logits (b, m, k) for the inputs fed now (the prefix and ``new`` on the first call,
        ``new`` after that) and the cache (:class:`KVCache`, preallocated for ``block_size``
        positions and written in place). ``condition_mask`` (b, C) bool, the same at every call:
        False at padding in the prefix."""
        idx = torch.cat((condition, new), dim=1) if cache is None else new
        cache = KVCache(self.block_size) if cache is None else cache
        if cache.length > 0 and cache.length < self.n_unmasked:
            raise ValueError(f"the first call must hold the whole bidirectional prefix (n_unmasked={self.n_unmasked})")
        n = idx.shape[1]
        if cache.length + n > self.block_size:
            raise ValueError(f"positions {cache.length}..{cache.length + n - 1} exceed block_size={self.block_size}")
        if self.compile_decoding and cache.length > 0:  # the first call allocates the cache eagerly
            if not cache.marked:
                static_decoding.mark_static(cache.layers.values())
                cache.marked = True
            positions = static_decoding.new_positions(cache.length, n, idx.device)
            key_mask = _key_mask(condition_mask, self.block_size)
            logits = self._step_compiler()(n, idx.device, self, idx, cache, positions, key_mask)
        else:
            x = self._embed(idx, None, cache.length)
            key_mask = _key_mask(condition_mask, cache.length + n)
            for i, block in enumerate(self.blocks):
                x = block.step(x, cache, i, key_mask)
            logits = self._head(x, None)[0]
        cache.length += n
        return logits, cache

    compile_decoding = False  # compile decode steps (torch.compile; CUDA graphs on the GPU), see static_decoding

    def _step_compiler(self) -> StepCompiler:
        if getattr(self, "_compiled_steps", None) is None:
            self._compiled_steps = StepCompiler(static_step)
        return self._compiled_steps

    @staticmethod
    def rewind_cache(cache: KVCache, n: int) -> KVCache:
        """Forget the last ``n`` positions (rejected drafts): only the length moves."""
        cache.length -= max(n, 0)
        return cache

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def _embed(self, idx, embeddings, offset: int) -> torch.Tensor:
        x = self.tok_emb(idx)  # (b, n, c)
        if embeddings is not None:  # explicit embeddings go first
            x = torch.cat((embeddings, x), dim=1)
        n = x.shape[1]
        if offset + n > self.block_size:
            raise ValueError(
                f"positions {offset}..{offset + n - 1} exceed block_size={self.block_size}"
            )
        return self.drop(x + self.pos_emb[:, offset:offset + n])  # (b, n, c)

    def _head(self, x, targets):
        logits = self.head(self.ln_f(x))  # (b, n, k)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss

    def forward(self, idx: torch.Tensor, embeddings: torch.Tensor | None = None,
                targets: torch.Tensor | None = None, key_mask: torch.Tensor | None = None):
        """``(logits (b, n, vocab_size), loss or None)``; logit i predicts token i+1."""
        x = self._embed(idx, embeddings, 0)
        for block in self.blocks:
            x, _ = block(x, key_mask=key_mask)
        return self._head(x, targets)

    def forward_with_past(self, idx: torch.Tensor, embeddings: torch.Tensor | None = None,
                          targets: torch.Tensor | None = None,
                          past: torch.Tensor | Sequence[torch.Tensor] | None = None,
                          past_length: int | None = None, key_mask: torch.Tensor | None = None):
        """Incremental decoding: ``(logits for the new positions, loss, presents)``.

        ``past``: the ``presents`` of earlier calls, one tensor (n_layer, 2, b, h, p, e) or a
        list of them (concatenated along positions, as the original's sampler passes it).
        ``presents`` holds this call's K/V only; append it to ``past`` for the next call.
        ``past_length`` (the original's argument) is checked against the cache when given.
        """
        if past is not None and not torch.is_tensor(past):
            past = torch.cat(list(past), dim=-2)
        cached = 0 if past is None else past.shape[-2]
        if past_length is not None and past is not None and past_length != cached:
            raise ValueError(f"past_length={past_length} but the cache holds {cached} positions")
        if past is not None and cached < self.n_unmasked:
            raise ValueError(
                f"the first call must hold the whole bidirectional prefix (n_unmasked="
                f"{self.n_unmasked}); the cache holds only {cached} positions"
            )
        if past is not None and embeddings is not None:
            raise ValueError("embeddings can only be prepended on the first call (past=None)")
        x = self._embed(idx, embeddings, cached)
        presents = []
        for i, block in enumerate(self.blocks):
            x, present = block(x, layer_past=None if past is None else past[i], key_mask=key_mask)
            presents.append(present)
        logits, loss = self._head(x, targets)
        return logits, loss, torch.stack(presents)  # presents: (n_layer, 2, b, h, n, e)


def static_step(gpt: GPT, idx: torch.Tensor, cache: KVCache, positions: torch.Tensor,
                key_mask: torch.Tensor | None) -> torch.Tensor:
    """The function compiled: logits (b, n, k) of ``idx`` (b, n) at ``positions`` (n,), every shape fixed."""
    x = gpt.drop(gpt.tok_emb(idx) + gpt.pos_emb[:, positions])  # (b, n, c)
    for i, block in enumerate(gpt.blocks):
        x = block.step(x, cache, i, key_mask, positions)
    return gpt._head(x, None)[0]
