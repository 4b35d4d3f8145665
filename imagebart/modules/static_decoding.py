"""Decode steps with every shape fixed, so ``torch.compile`` (and CUDA graphs) capture one graph.

The eager cached step slices its preallocated key / value buffers at a Python integer (the cache
length): it reads only the filled part, which is fastest eagerly, but a compiled graph would be
specialised to that integer and recompiled at every step. Here the positions of the new tokens are
a tensor: new keys / values are written with ``index_copy_`` and the queries attend over the whole
buffer with a mask (a key is visible when its position is at most the query's). Stale entries past
the cache length (rejected drafts) are masked out, so rewinding still only moves a length.

On CUDA, ``torch.compile(mode="reduce-overhead")`` replays the step as a CUDA graph; the buffers it
writes and the weights it reads are marked as static addresses so nothing is copied per step.

einops axes: b batch, h heads, n new positions, t buffer positions, d head width.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

COMPILED_BLOCK_SIZES = 4  # distinct block sizes compiled per network; other sizes run the same step eagerly
COMPILE_AFTER = 3  # a block size is compiled once it recurs (1, a speculative block), not for one-off sizes
RECOMPILE_LIMIT = 64  # graphs per step function: networks x block sizes x batch sizes


def new_positions(start: int, n: int, device: torch.device) -> torch.Tensor:
    """Positions start..start+n-1 (n,) of the tokens fed now, made on the device without a host sync."""
    return torch.arange(start, start + n, device=device)


def write(kv: torch.Tensor, new: torch.Tensor, positions: torch.Tensor) -> None:
    """Keys and values ``new`` (2, b, h, n, d) into the buffer (2, b, h, t, d) at ``positions`` (n,), in
    place. One operation on the buffer itself: written through views (``kv[0]``, ``kv[1]``), a compiled
    graph copied the whole buffer at every step."""
    kv.index_copy_(3, positions, new)


def visible(positions: torch.Tensor, size: int, key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Attention mask over the whole buffer: (n, t), or (b, 1, n, t) with ``key_mask`` (b, t) bool
    (False at padding): key j is visible to the query at position p when j <= p."""
    keys = torch.arange(size, device=positions.device)
    mask = keys[None, :] <= positions[:, None]  # (n, t)
    return mask if key_mask is None else mask & key_mask[:, None, None, :]


def mark_static(tensors) -> None:
    """Tell the compiler these tensors keep their address between calls (caches, weights): CUDA graphs
    then read and write them in place instead of copying them in at every replay."""
    for tensor in tensors:
        if tensor is not None and tensor.is_cuda:
            torch._dynamo.mark_static_address(tensor)


class StepCompiler:
    """A network's static step, compiled for the block sizes that recur (the third time a size is
    seen, at most :data:`COMPILED_BLOCK_SIZES` of them, one graph each); one-off sizes (the tail of a
    scale, a run of kept tokens) run the step uncompiled, which computes the same."""

    def __init__(self, step):
        self.step, self.seen, self.sizes, self._compiled = step, {}, set(), None

    def __call__(self, size: int, device: torch.device, *args):
        self.seen[size] = self.seen.get(size, 0) + 1
        if size not in self.sizes:
            if self.seen[size] < COMPILE_AFTER or len(self.sizes) >= COMPILED_BLOCK_SIZES:
                return self.step(*args)
            self.sizes.add(size)
            logger.info("compiling the decode step for blocks of %d tokens on %s: the first call takes a while",
                        size, device.type)
        if self._compiled is None:
            config = torch._dynamo.config
            config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
            mode = "reduce-overhead" if device.type == "cuda" else None  # CUDA graphs on the GPU
            self._compiled = torch.compile(self.step, mode=mode, dynamic=False)
        if device.type != "cuda":
            return self._compiled(*args)
        torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs have been consumed
        return self._compiled(*args).clone()  # a CUDA graph reuses its output memory at the next replay
