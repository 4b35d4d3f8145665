"""The frozen first stage: a VQGAN (taming's Encoder / Decoder / VectorQuantizer2) as a plain module.

Parameter names are taming's (``encoder.*``, ``decoder.*``, ``quantize.*``, ``quant_conv.*``,
``post_quant_conv.*``), so official VQGAN checkpoints load unchanged. Two fixes over taming:
``ddconfig.tanh_out`` is honoured (taming's public Decoder silently drops it) and the optional
remap to the used codes is a lookup table instead of a B×L×n_embed comparison.

Index spaces: *raw* indices address the full codebook [0, n_embed); *remapped* indices address
the K = ``quantize.re_embed`` used codes [0, K) and are what the transformers see.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
from taming.modules.diffusionmodules.model import Decoder, Encoder
from taming.modules.vqvae.quantize import VectorQuantizer2

from imagebart.checkpoint_io import load_state_dict, load_state_dict_checked

logger = logging.getLogger(__name__)

# ddconfig keys taming's Encoder/Decoder understand (both swallow unknown keys silently)
DDCONFIG_KEYS = frozenset(
    {
        "ch", "out_ch", "ch_mult", "num_res_blocks", "attn_resolutions", "dropout",
        "resamp_with_conv", "in_channels", "resolution", "z_channels", "double_z",
        "give_pre_end", "tanh_out", "attn_type",
    }
)

CKPT_HINT = (
    "check first_stage_config.params (model.params in a VQGAN config): embed_dim, n_embed, "
    "remap and ddconfig (ch, ch_mult, num_res_blocks, attn_resolutions, z_channels, resolution)"
)


# helpers


@contextlib.contextmanager
def _stdout_to_log():
    """taming prints on construction; route that to logging."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield
    for line in buf.getvalue().splitlines():
        logger.debug("taming: %s", line)


def load_used_indices(path: str | Path, n_embed: int) -> torch.Tensor:
    """The remap list: unique int64 indices into the n_embed codebook, read from a .npy file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"remap file {str(path)!r} (config key first_stage_config.params.remap) does not exist; "
            "paths are relative to the working directory. The official VQGANs' lists are the original "
            "release's data/vqgan_indices/*.npy (see README, 'Official pretrained models'); for your own "
            "VQGAN create one with scripts/compute_remap.py, or set remap: null"
        )
    used = np.load(path)
    if used.ndim != 1 or not np.issubdtype(used.dtype, np.integer):
        raise ValueError(
            f"remap file {str(path)!r}: expected a 1-D integer array, got {used.dtype} {used.shape}"
        )
    if used.size == 0 or used.min() < 0 or used.max() >= n_embed:
        raise ValueError(f"remap file {str(path)!r}: indices must lie in [0, n_embed={n_embed})")
    if np.unique(used).size != used.size:
        raise ValueError(f"remap file {str(path)!r}: indices must be unique")
    return torch.from_numpy(used.astype(np.int64))


# quantiser


class RemappedVectorQuantizer(VectorQuantizer2):
    """taming's VectorQuantizer2 with an O(n_embed) remap lookup table.

    ``used`` (int64, persistent, as in taming) lists the used raw codes; ``raw_to_used``
    (non-persistent) maps a raw index to its remapped index, -1 for codes not in ``used``.
    Unknown codes get ``unknown_index``: "random" (taming's default, ``torch.randint(0, K)`` per
    position, so encoding is not deterministic there), "extra" (one extra token K) or an int.
    """

    def __init__(self, n_e, e_dim, beta=0.25, remap=None, unknown_index="random",
                 sane_index_shape=False, legacy=True):
        with _stdout_to_log():
            super().__init__(n_e, e_dim, beta, remap=None, sane_index_shape=sane_index_shape,
                             legacy=legacy)
        self.remap = remap
        self.unknown_index = unknown_index
        if remap is None:
            return
        if not (unknown_index in ("random", "extra") or isinstance(unknown_index, int)):
            raise ValueError(f"unknown_index must be 'random', 'extra' or an int, got {unknown_index!r}")
        self.register_buffer("used", load_used_indices(remap, n_e))
        self.re_embed = self.used.shape[0]
        if unknown_index == "extra":
            self.unknown_index = self.re_embed
            self.re_embed += 1
        self.register_buffer("raw_to_used", self._lookup_table(), persistent=False)
        logger.info("remapping %d codes to %d (unknown codes -> %s)", n_e, self.re_embed, unknown_index)

    def _lookup_table(self) -> torch.Tensor:
        table = torch.full((self.n_e,), -1, dtype=torch.long, device=self.used.device)  # (n_embed,)
        table[self.used] = torch.arange(self.used.shape[0], device=self.used.device)
        return table

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if self.remap is not None:  # `used` may have changed: rebuild the table from it
            self.raw_to_used = self._lookup_table()

    def remap_to_used(self, inds: torch.Tensor) -> torch.Tensor:
        """Raw indices (any shape) -> remapped indices in [0, re_embed)."""
        new = self.raw_to_used.to(inds.device)[inds]  # same shape as inds
        unknown = new < 0
        if self.unknown_index == "random":
            # as taming: one CPU draw per unknown position, in row-major order
            n_unknown = int(unknown.sum())
            if n_unknown:
                new[unknown] = torch.randint(0, self.re_embed, size=(n_unknown,)).to(new.device)
        else:
            new[unknown] = self.unknown_index
        return new

    def unmap_to_all(self, inds: torch.Tensor) -> torch.Tensor:
        """Remapped indices (any shape) -> raw codebook indices; the "extra" token maps to 0."""
        if inds.numel() and (int(inds.min()) < 0 or int(inds.max()) >= self.re_embed):
            raise ValueError(
                f"token indices must lie in [0, re_embed={self.re_embed}), got "
                f"[{int(inds.min())}, {int(inds.max())}]"
            )
        used = self.used.to(inds.device)
        inds = inds.masked_fill(inds >= used.shape[0], 0)  # "extra" token, as taming
        return used[inds]

    def raw_indices(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest codebook entry of each latent vector in the FULL codebook (no remap)."""
        b, _, h, w = z.shape
        z_flat = z.permute(0, 2, 3, 1).reshape(-1, self.e_dim)  # (B*h*w, D)
        e = self.embedding.weight  # (n_embed, D)
        d = z_flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * z_flat @ e.t()  # (B*h*w, n_embed)
        return d.argmin(1).reshape(b, h, w)


# the first stage


class VQGANWrapper(nn.Module):
    """A VQGAN first stage with the parameters of taming's ``VQModel`` (``lossconfig`` is ignored).

    Call :meth:`freeze` to use it as the frozen first stage of a denoiser.
    """

    def __init__(
        self,
        embed_dim: int,
        n_embed: int,
        ddconfig: Mapping[str, Any],
        lossconfig: Mapping[str, Any] | None = None,
        ckpt_path: str | None = None,
        ignore_keys: Sequence[str] = (),
        image_key: str = "image",
        colorize_nlabels: int | None = None,
        monitor: str | None = None,
        remap: str | None = None,
        sane_index_shape: bool = False,
    ):
        super().__init__()
        ddconfig = dict(ddconfig)
        unknown = sorted(set(ddconfig) - DDCONFIG_KEYS)
        if unknown:
            raise ValueError(
                f"ddconfig has unknown keys {unknown}; expected a subset of {sorted(DDCONFIG_KEYS)}"
            )
        if ddconfig.get("attn_type", "vanilla") != "vanilla":
            raise ValueError(
                f"ddconfig.attn_type: only 'vanilla' is supported, got {ddconfig['attn_type']!r}"
            )
        # taming's Encoder defaults to double_z=True (twice z_channels out), useless for a VQGAN
        if ddconfig.setdefault("double_z", False):
            raise ValueError("ddconfig.double_z must be false for a VQGAN (quant_conv reads z_channels)")
        self.tanh_out = bool(ddconfig.pop("tanh_out", False))
        ddconfig.pop("attn_type", None)

        self.embed_dim = embed_dim
        side = ddconfig["resolution"] // 2 ** (len(ddconfig["ch_mult"]) - 1)
        self.latent_shape = (side, side)  # (h, w) of the token grid
        self.image_key = image_key
        self.monitor = monitor
        with _stdout_to_log():
            self.encoder = Encoder(**ddconfig)
            self.decoder = Decoder(**ddconfig)
        self.quantize = RemappedVectorQuantizer(
            n_embed, embed_dim, beta=0.25, remap=remap, sane_index_shape=sane_index_shape
        )
        self.quant_conv = nn.Conv2d(ddconfig["z_channels"], embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)
        if colorize_nlabels is not None:
            if not isinstance(colorize_nlabels, int):
                raise TypeError(f"colorize_nlabels must be an int, got {colorize_nlabels!r}")
            self.register_buffer("colorize", torch.randn(3, colorize_nlabels, 1, 1))
        self._frozen = False
        if ckpt_path is not None:
            self.init_from_ckpt(ckpt_path, ignore_keys=ignore_keys)

    # checkpoints

    def init_from_ckpt(self, path: str | Path, ignore_keys: Sequence[str] = ()) -> None:
        """Load a VQGAN ``state_dict`` (taming's ``loss.*`` entries and ``ignore_keys`` prefixes dropped).

        A ``quantize.used`` in the checkpoint wins over the remap file, as in the original.
        """
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"VQGAN checkpoint {str(path)!r} does not exist (config key "
                "first_stage_config.params.ckpt_path, or model.params.ckpt_path in a VQGAN config)"
            )
        sd = load_state_dict(path)
        drop = ("loss.", *ignore_keys)
        sd = {k: v for k, v in sd.items() if not k.startswith(drop)}
        if self.quantize.remap is not None and "quantize.used" not in sd:
            # a VQGAN trained without remap (all official ones): the remap file provides `used`
            sd["quantize.used"] = self.quantize.used
        load_state_dict_checked(self, sd, source=str(path), hint=CKPT_HINT)
        logger.info("restored VQGAN from %s", path)

    # freezing

    def freeze(self) -> "VQGANWrapper":
        """Eval mode for good, no gradients: how a denoiser holds its first stage."""
        self._frozen = True
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def train(self, mode: bool = True):
        """Stays in eval mode once frozen (a parent's ``.train()`` reaches here too)."""
        return super().train(False if getattr(self, "_frozen", False) else mode)

    # encoding / decoding

    def get_input(self, batch: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
        """A (B, H, W, C) float batch entry as a contiguous (B, C, H, W) float tensor."""
        x = batch[key]
        if x.dim() == 3:
            x = x[..., None]
        return x.permute(0, 3, 1, 2).contiguous().float()  # (B, C, H, W)

    def encode_to_prequant(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(x))  # (B, embed_dim, h, w)

    def encode(self, x: torch.Tensor):
        """(quant, emb_loss, (perplexity, min_encodings, indices)) as taming's VQModel.encode."""
        return self.quantize(self.encode_to_prequant(x))

    def decode(self, quant: torch.Tensor) -> torch.Tensor:
        dec = self.decoder(self.post_quant_conv(quant))  # (B, out_ch, H, W)
        if self.tanh_out and not self.decoder.give_pre_end:
            dec = torch.tanh(dec)
        return dec

    def get_codebook_entry(self, indices: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """Remapped indices and a (B, h, w, embed_dim) shape -> (B, embed_dim, h, w) latents."""
        return self.quantize.get_codebook_entry(indices.reshape(-1), shape)

    def decode_code(self, code: torch.Tensor) -> torch.Tensor:
        """Remapped indices (B, h, w) -> images (B, out_ch, H, W)."""
        b, h, w = code.shape
        return self.decode(self.get_codebook_entry(code, (b, h, w, self.embed_dim)))

    # tokens: what the transformers read and write

    @property
    def num_codes(self) -> int:
        """K: the remapped codebook size (the used codes, or n_embed without remap)."""
        return int(self.quantize.re_embed)

    def encode_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> x_0 (B, L), remapped code ids."""
        _, _, info = self.encode(x)
        return info[2].reshape(x.shape[0], -1)

    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """x_0 (B, L) -> images (B, 3, H, W) in [-1, 1]."""
        return self.decode_code(tokens.reshape(-1, *self.latent_shape))

    def forward(self, x: torch.Tensor):
        quant, diff, _ = self.encode(x)
        return self.decode(quant), diff
