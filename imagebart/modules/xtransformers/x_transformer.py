"""Encoder-decoder denoisers p_θ(x_{t-1} | x_t) built on the x-transformers package.

The encoder reads ``[t, (cond…), x_t]`` bidirectionally; the causal decoder reads
``[sos, x_{t-1}[:-1]]`` and cross-attends to the encoder output. Kept at the original's
module path so its YAML ``target:`` strings load.

``legacy_2021=True`` reproduces the numerics of the 2021 x-transformers copy the official
checkpoints were trained with (norms and output projections with bias, unscaled absolute
positions, ``to_logits`` with bias); original-format state dicts are converted on load
(see :mod:`imagebart.modules.xtransformers.legacy`). Tested against x-transformers 2.31.

einops axes: b batch, n / s decoder / encoder positions, d model width, k codes (K).
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn
from x_transformers import Decoder, Encoder, TransformerWrapper
from x_transformers.x_transformers import AbsolutePositionalEmbedding, Attention, LayerIntermediates

from imagebart.modules.xtransformers.legacy import convert_legacy_state_dict, is_legacy_state_dict

# x-transformers' per-layer K/V cache (self- and cross-attention) with its ``cache_length``
DecoderCache = LayerIntermediates

# options of the 2021 copy that released configs may set and that mean the same in 2.x
_LEGACY_ALLOWED_OPTIONS = {"depth", "heads", "attn_dim_head", "attn_dropout", "ff_dropout",
                           "emb_dropout", "attn_flash"}
_WRAPPER_OPTIONS = set(inspect.signature(TransformerWrapper.__init__).parameters) - {
    "self", "attn_layers", "num_tokens", "max_seq_len"}

# helpers


def exists(x):
    return x is not None


def _split_by_prefix(prefix: str, kwargs: dict) -> tuple[dict, dict]:
    """(options that start with ``prefix``, prefix removed; the others)."""
    picked = {k[len(prefix):]: v for k, v in kwargs.items() if k.startswith(prefix)}
    rest = {k: v for k, v in kwargs.items() if not k.startswith(prefix)}
    return picked, rest


def _make_legacy_2021(wrapper: TransformerWrapper) -> None:
    """Swap in the 2021 copy's modules where x-transformers 2.x has no option for them.

    Parameter names stay the 2.x ones (``legacy.py`` maps the 2021 names onto them).
    """
    dim = wrapper.attn_layers.dim
    if isinstance(wrapper.pos_emb, AbsolutePositionalEmbedding):
        wrapper.pos_emb.scale = 1.0  # 2021: positions added unscaled (2.x multiplies by dim**-0.5)
    for norms, block, _ in wrapper.attn_layers.layers:
        norms[0] = nn.LayerNorm(dim)  # 2021: nn.LayerNorm with weight and bias before each block
        if isinstance(block, Attention):
            inner = block.to_q.out_features
            block.to_out = nn.Linear(inner, dim, bias=True)  # 2021: output projection with bias
    wrapper.attn_layers.final_norm = nn.LayerNorm(dim)  # 2021: final norm with bias


def _build_wrapper(name: str, dim: int, options: dict, layers_cls, layers_kwargs: dict,
                   legacy_2021: bool, with_logits: bool) -> TransformerWrapper:
    """One ``TransformerWrapper(Encoder|Decoder)`` from the ``enc_*``/``dec_*`` options."""
    options = dict(options)
    for required in ("num_tokens", "max_seq_len"):
        if required not in options:
            raise ValueError(f"XTransformer needs '{name}_{required}' in its params")
    if "dim" in options:
        raise ValueError(f"set the width with 'dim', not '{name}_dim'")
    if legacy_2021:
        extra = set(options) - _LEGACY_ALLOWED_OPTIONS - {"num_tokens", "max_seq_len"}
        if extra:
            raise ValueError(
                f"legacy_2021 reproduces the 2021 x-transformers copy and supports only "
                f"{sorted(_LEGACY_ALLOWED_OPTIONS)} besides num_tokens/max_seq_len; got "
                f"{sorted(f'{name}_{k}' for k in extra)}"
            )
    options.setdefault("attn_flash", True)  # torch scaled-dot-product attention
    wrapper_kwargs = {k: options.pop(k) for k in list(options) if k in _WRAPPER_OPTIONS}
    num_tokens, max_seq_len = options.pop("num_tokens"), options.pop("max_seq_len")
    if not with_logits:
        wrapper_kwargs["return_only_embed"] = True
    elif legacy_2021:
        wrapper_kwargs["to_logits"] = nn.Linear(dim, num_tokens, bias=True)  # 2021: with bias
    try:
        layers = layers_cls(dim=dim, **layers_kwargs, **options)
        wrapper = TransformerWrapper(num_tokens=num_tokens, max_seq_len=max_seq_len,
                                     attn_layers=layers, **wrapper_kwargs)
    except (AssertionError, TypeError) as err:
        raise ValueError(
            f"bad '{name}_*' options {sorted(options)} for x-transformers: {err}"
        ) from err
    if legacy_2021:
        _make_legacy_2021(wrapper)
    return wrapper


# encoder-decoder


class XTransformer(nn.Module):
    """Encoder over the conditioning, causal decoder over the target; logits over K codes.

    Options are split by prefix like the original: ``enc_num_tokens``, ``enc_max_seq_len``,
    ``enc_depth``, ``enc_heads`` and any other x-transformers option (``enc_attn_flash``,
    ``dec_rotary_pos_emb``, ``dec_ff_glu`` …) go to the encoder / decoder.
    ``legacy_2021`` builds the 2021 numerics so official checkpoints load and match.
    """

    def __init__(self, *, dim: int, tie_token_emb: bool = False, wrap_decoder: bool = False,
                 causal_decoder: bool = True, split_dim=None, legacy_2021: bool = False,
                 **kwargs):
        super().__init__()
        if wrap_decoder:
            raise ValueError(
                "wrap_decoder: true is not supported (the denoiser builds the decoder input "
                "[sos, x_{t-1}[:-1]] itself; every released config sets wrap_decoder: false)"
            )
        if not causal_decoder:
            raise ValueError("causal_decoder: false is not supported (the decoder is causal)")
        if split_dim is not None:
            raise ValueError("split_dim (channel-wise conditioning wrapper) is not supported")
        enc_kwargs, kwargs = _split_by_prefix("enc_", kwargs)
        dec_kwargs, kwargs = _split_by_prefix("dec_", kwargs)
        if kwargs:
            raise ValueError(
                f"unknown XTransformer params {sorted(kwargs)}; encoder/decoder options need "
                "an 'enc_' or 'dec_' prefix"
            )
        self.legacy_2021 = legacy_2021
        self.encoder = _build_wrapper("enc", dim, enc_kwargs, Encoder, {}, legacy_2021,
                                      with_logits=False)
        self.decoder = _build_wrapper("dec", dim, dec_kwargs, Decoder, {"cross_attend": True},
                                      legacy_2021, with_logits=True)
        if tie_token_emb:
            self.decoder.token_emb = self.encoder.token_emb
        self.register_load_state_dict_pre_hook(_convert_legacy_on_load)

    @property
    def num_tokens(self) -> int:
        """K, the number of codes the decoder predicts."""
        return self.decoder.num_tokens

    # full (teacher-forced) pass

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder states for ``src`` = ``[t, (cond…), x_t]``; compute once per scale."""
        return self.encoder(src, mask=src_mask, return_embeddings=True)  # (b, s, d)

    def network_logits(self, src, tgt, src_mask=None, tgt_mask=None, enc=None):
        """Decoder logits before any residual term (subclasses add theirs)."""
        enc = self.encode(src, src_mask) if enc is None else enc
        return self.decoder(tgt, context=enc, mask=tgt_mask, context_mask=src_mask)  # (b, n, k)

    def forward(self, src, tgt, src_mask=None, tgt_mask=None, enc=None):
        """``(logits (b, n, K), None)`` for decoder input ``tgt``, as the original returns."""
        logits = self.network_logits(src, tgt, src_mask, tgt_mask, enc)
        return self.add_residual(logits, src, 0), None

    def add_residual(self, logits: torch.Tensor, src: torch.Tensor | None, offset: int):
        """Hook for the residual-scaled variant; positions start at ``offset``."""
        return logits

    # incremental decoding

    @torch.no_grad()
    def decode_step(self, tgt: torch.Tensor, context: torch.Tensor,
                    cache: DecoderCache | None = None, *, src: torch.Tensor | None = None,
                    src_mask: torch.Tensor | None = None):
        """Logits for the NEW decoder tokens ``tgt`` (b, m) and the extended cache.

        The first call (``cache=None``) takes the start tokens (e.g. ``[sos]``); later calls take
        the tokens sampled since. Self-attention K/V are cached; cross-attention K/V over
        ``context`` (from :meth:`encode`) are computed on the first call and reused.
        ``src`` is needed by the residual-scaled variant (t and x_t are read from it).
        """
        offset = cache.cache_length if exists(cache) else 0
        if offset + tgt.shape[1] > self.decoder.max_seq_len:
            raise ValueError(
                f"decoder positions {offset}..{offset + tgt.shape[1] - 1} exceed "
                f"dec_max_seq_len={self.decoder.max_seq_len}"
            )
        extra = {} if cache is None else {"input_not_include_cache": True,
                                          "cache_age": tgt.shape[1]}
        logits, cache = self.decoder(tgt, context=context, context_mask=src_mask, cache=cache,
                                     return_intermediates=True, **extra)  # (b, m, k)
        return self.add_residual(logits, src, offset), cache


# residual-scaled variant


class ResidualScaledXTransformer(XTransformer):
    """logits = exp(log_scalors[t-1]) · network logits + log(α_t·onehot(x_t) + (1-α_t)/K).

    t is read from ``src[:, scale_pos]`` and x_t from ``src[:, xt_start:xt_start+xt_size]``.
    α comes from the denoiser through :meth:`set_alphas` (indexed by t, α_0 = 1) as in the
    original; it is a non-persistent buffer, so it follows ``.to(device)`` but is not saved.
    """

    def __init__(self, *, scale_pos: int, n_scales: int, xt_start: int, xt_size: int, **kwargs):
        super().__init__(**kwargs)
        self.scale_pos = scale_pos
        self.n_scales = n_scales
        self.xt_start = xt_start
        self.xt_end = xt_start + xt_size
        self.log_scalors = nn.Parameter(torch.zeros(n_scales))
        self.register_buffer("scale_alphas", None, persistent=False)

    def set_alphas(self, alphas: torch.Tensor) -> None:
        """α_t for t = 0..T (α_0 = 1), i.e. the schedule's ``alphas``; the denoiser calls this."""
        alphas = torch.as_tensor(alphas, dtype=torch.float32).detach().clone()
        if alphas.ndim != 1 or alphas.numel() < self.n_scales + 1:
            raise ValueError(
                f"set_alphas expects a 1-D tensor of alpha_0..alpha_T with T >= n_scales="
                f"{self.n_scales}, got shape {tuple(alphas.shape)}"
            )
        self.scale_alphas = alphas.to(self.log_scalors.device)

    def add_residual(self, logits, src, offset):
        if src is None:
            raise ValueError("ResidualScaledXTransformer needs src (to read t and x_t)")
        if self.scale_alphas is None:
            raise RuntimeError("call set_alphas(alphas) before running ResidualScaledXTransformer")
        t = src[:, self.scale_pos]  # (b,)  scale token in 1..T
        # checked once per pass (offset 0), not at every cached step: it syncs with the device
        if offset == 0 and ((t < 1).any() or (t > self.n_scales).any()):
            raise ValueError(
                f"scale token at src[:, {self.scale_pos}] must be in 1..{self.n_scales}"
            )
        positions = slice(self.xt_start + offset, self.xt_start + offset + logits.shape[1])
        x_t = F.one_hot(src[:, positions], self.num_tokens)  # (b, n, k)
        alpha_t = self.scale_alphas.to(logits.device)[t].view(-1, 1, 1)  # (b, 1, 1)
        residual = torch.log(alpha_t * x_t + (1 - alpha_t) / self.num_tokens)  # (b, n, k)
        scalors = torch.exp(self.log_scalors[t - 1]).view(-1, 1, 1)  # (b, 1, 1)
        return logits * scalors + residual


# loading official checkpoints


def _convert_legacy_on_load(module, state_dict, prefix, *args):
    """Rename 2021-format keys under ``prefix`` in place (legacy models) and catch a state dict
    whose layout (2021 numerics or not) does not match how ``module`` was built."""
    own = {k[len(prefix):]: k for k in state_dict if k.startswith(prefix)}
    if is_legacy_state_dict(own):
        if not module.legacy_2021:
            raise ValueError(
                "this state dict is in the original (2021 x-transformers) format; build the "
                "transformer with legacy_2021: true to load it"
            )
        converted = convert_legacy_state_dict(
            {k: state_dict.pop(full) for k, full in own.items()}, "xtransformer")
        state_dict.update({prefix + k: v for k, v in converted.items()})
        return
    has_legacy_layout = "decoder.attn_layers.final_norm.bias" in own
    has_new_layout = "decoder.attn_layers.final_norm.gamma" in own
    if has_legacy_layout and not module.legacy_2021:
        raise ValueError("this state dict comes from a legacy_2021 network (norms with bias); "
                         "build the transformer with legacy_2021: true to load it")
    if has_new_layout and module.legacy_2021:
        raise ValueError("this state dict comes from a network built without legacy_2021; "
                         "set legacy_2021: false to load it")
