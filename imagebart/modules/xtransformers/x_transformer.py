"""Encoder-decoder denoisers p_θ(x_{t-1} | x_t) built on the x-transformers package.

The encoder reads ``[t, (cond…), x_t]`` bidirectionally; the causal decoder reads
``[sos, x_{t-1}[:-1]]`` and cross-attends to the encoder output. Kept at the original's
module path so its YAML ``target:`` strings load.

``legacy_2021=True`` reproduces the numerics of the 2021 x-transformers copy the official
checkpoints were trained with (norms and output projections with bias, unscaled absolute
positions, ``to_logits`` with bias); original-format state dicts are renamed by
:mod:`imagebart.loading` before they reach the network. Tested against x-transformers 2.31.

The denoising-network interface (shared with :class:`imagebart.modules.transformer.mingpt.GPT`):
``input_vocabulary`` / ``output_vocabulary``, ``reads_x_t``, ``check_fits(length, n_cond)``,
``teacher_forced(condition, x_prev)``, ``decode_step(condition, new, cache)`` and
``rewind_cache(cache, n)``, where
``condition`` is the encoder input ``[t, (cond…), x_t]``.

einops axes: b batch, n / s decoder / encoder positions, d model width, k codes (K).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from x_transformers import Decoder, Encoder, TransformerWrapper
from x_transformers.x_transformers import AbsolutePositionalEmbedding, Attention, LayerIntermediates

from imagebart.modules.static_decoding import StepCompiler
from imagebart.modules.xtransformers.lean_decode import LeanDecoderState, matches_generic, static_step, supports
from imagebart.modules.xtransformers.legacy import is_legacy_state_dict

logger = logging.getLogger(__name__)


@dataclass
class EncoderDecoderCache:
    """What incremental decoding keeps between steps: the encoder states (computed once per
    scale) and x-transformers' per-layer self- and cross-attention K/V (``layers.cache_length``)."""

    context: torch.Tensor  # (b, s, d)
    layers: LayerIntermediates

    @property
    def length(self) -> int:
        """Decoder positions cached so far (sos included)."""
        return self.layers.cache_length


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
        self.sos_token = 0  # the decoder's start token; the denoiser sets its configured one
        self.register_load_state_dict_pre_hook(_refuse_other_layout)

    # the denoising-network interface

    reads_x_t = True  # the encoder reads x_t (the decoder-only GPT of scale T does not)

    @property
    def input_vocabulary(self) -> int:
        """Token ids the encoder reads: scale, class and code tokens share them."""
        return self.encoder.num_tokens

    @property
    def output_vocabulary(self) -> int:
        """K, the number of codes the decoder predicts."""
        return self.decoder.num_tokens

    vocabulary_keys = ("enc_num_tokens", "dec_num_tokens")  # config keys named in errors

    def check_fits(self, length: int, n_cond: int) -> None:
        """Encoder input ``[t, cond x n_cond, x_t]`` and L decoder positions must fit."""
        if self.encoder.max_seq_len < 1 + n_cond + length:
            raise ValueError(f"transformer_config.params.enc_max_seq_len={self.encoder.max_seq_len} cannot hold "
                             f"[t, cond x{n_cond}, x_t] = {1 + n_cond + length} tokens")
        if self.decoder.max_seq_len < length:
            raise ValueError(f"transformer_config.params.dec_max_seq_len={self.decoder.max_seq_len} is shorter "
                             f"than L={length} tokens per image")

    def teacher_forced(self, condition: torch.Tensor, x_prev: torch.Tensor,
                       condition_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (b, n, k): position j predicts x_prev[:, j] from ``condition`` and x_prev[:, :j].
        ``condition_mask`` (b, s) bool: False at padding, which no position attends to."""
        sos = torch.full_like(x_prev[:, :1], self.sos_token)
        tgt = torch.cat((sos, x_prev), dim=1)[:, :-1]  # [sos, x_prev[:-1]]
        logits, _ = self(condition, tgt, src_mask=condition_mask)
        return logits

    # full pass

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

    lean_decoding = True  # decode through lean_decode where it matches x-transformers (checked once)
    compile_decoding = False  # compile lean steps (torch.compile; CUDA graphs on the GPU), see static_decoding

    @torch.no_grad()
    def decode_step(self, condition: torch.Tensor, new: torch.Tensor,
                    cache: EncoderDecoderCache | LeanDecoderState | None = None,
                    condition_mask: torch.Tensor | None = None):
        """Logits (b, m, k) for the decoder inputs fed now, and the extended cache.

        The first call (``cache=None``) encodes ``condition`` and feeds ``[sos, *new]``; later
        calls feed the tokens ``new`` (b, m) sampled since. The last logits predict the next
        token. Self-attention K/V are cached; cross-attention K/V are computed once and reused.
        ``condition_mask`` (b, s) bool, the same at every call: False at padding. Where
        :mod:`~imagebart.modules.xtransformers.lean_decode` supports the decoder (and its first
        logits equal x-transformers' own), it decodes with static caches.
        """
        if isinstance(cache, LeanDecoderState) or (cache is None and self._use_lean()):
            return self._lean_step(condition, new, cache, condition_mask)
        if cache is None:
            context = self.encode(condition, condition_mask)  # (b, s, d), once per scale
            tgt = torch.cat((torch.full_like(condition[:, :1], self.sos_token), new), dim=1)
            offset, layers, extra = 0, None, {}
        else:
            context, tgt, offset, layers = cache.context, new, cache.length, cache.layers
            extra = {"input_not_include_cache": True, "cache_age": tgt.shape[1]}
        if offset + tgt.shape[1] > self.decoder.max_seq_len:
            raise ValueError(
                f"decoder positions {offset}..{offset + tgt.shape[1] - 1} exceed "
                f"dec_max_seq_len={self.decoder.max_seq_len}"
            )
        logits, layers = self.decoder(tgt, context=context, context_mask=condition_mask, cache=layers,
                                      return_intermediates=True, **extra)  # (b, m, k)
        return self.add_residual(logits, condition, offset), EncoderDecoderCache(context, layers)

    def _use_lean(self) -> bool:
        return self.lean_decoding and getattr(self, "_lean_verified", None) is not False and supports(self.decoder)

    def _lean_step(self, condition, new, state, condition_mask):
        if state is None:
            context = self.encode(condition, condition_mask)  # (b, s, d), once per scale
            if getattr(self, "_lean_verified", None) is None:
                self._lean_verified = self._lean_matches(context, condition_mask)
                if not self._lean_verified:
                    logger.warning("lean decoding differs from x-transformers for this decoder; using "
                                   "x-transformers' cached path")
                    return self.decode_step(condition, new, None, condition_mask)
            state = LeanDecoderState(self.decoder, context, condition_mask, self._step_compiler())
            new = torch.cat((torch.full_like(condition[:, :1], self.sos_token), new), dim=1)  # [sos, *new]
        offset = state.length
        if offset + new.shape[1] > self.decoder.max_seq_len:
            raise ValueError(f"decoder positions {offset}..{offset + new.shape[1] - 1} exceed "
                             f"dec_max_seq_len={self.decoder.max_seq_len}")
        logits = state.step(new)  # (b, m, k)
        return self.add_residual(logits, condition, offset), state

    def _step_compiler(self) -> StepCompiler | None:
        if not self.compile_decoding:
            return None
        if getattr(self, "_compiled_steps", None) is None:
            self._compiled_steps = StepCompiler(static_step)
        return self._compiled_steps

    def _lean_matches(self, context, context_mask) -> bool:
        """Once per network: a probe of random decoder inputs, in two steps (so positions past 0 and the
        cache are exercised), against x-transformers' full pass over the same inputs."""
        length = min(5, self.decoder.max_seq_len)
        generator = torch.Generator(device=context.device).manual_seed(0)  # leaves the global random state alone
        probe = torch.randint(0, self.output_vocabulary, (1, length), device=context.device, generator=generator)
        mask = None if context_mask is None else context_mask[:1]
        generic = self.decoder(probe, context=context[:1], context_mask=mask)  # (1, length, k)
        try:
            state = LeanDecoderState(self.decoder, context[:1], mask)
            lean = torch.cat((state.step(probe[:, :2]), state.step(probe[:, 2:])), dim=1)
        except (AttributeError, TypeError, RuntimeError) as err:  # modules this path does not know
            logger.info("lean decoding cannot run this decoder: %s", err)
            return False
        return matches_generic(generic, lean)

    @staticmethod
    def rewind_cache(cache: EncoderDecoderCache | LeanDecoderState, n: int):
        """Forget the last ``n`` decoder positions (rejected drafts); self-attention K/V are cut
        (in place), cross-attention K/V (the encoder's) stay. Returns the cache."""
        if isinstance(cache, LeanDecoderState):
            cache.rewind(n)
            return cache
        if n <= 0:
            return cache
        keep = cache.length - n
        for inter in cache.layers.attn_intermediates:
            if inter.layer_type == "a":
                inter.cached_kv = tuple(kv[..., :keep, :] for kv in inter.cached_kv)
        cache.layers.cache_length = keep
        return cache


# residual-scaled variant


class ResidualScaledXTransformer(XTransformer):
    """logits = exp(log_scalors[t-1]) · network logits + log(α_t·onehot(x_t) + (1-α_t)/K).

    t is read from ``src[:, scale_pos]`` and x_t from ``src[:, xt_start:xt_start+xt_size]``.
    α_t comes from the denoiser's schedule (a shared module, attached with
    :meth:`attach_schedule`), so it follows the model across devices and is never saved here.
    """

    def __init__(self, *, scale_pos: int, n_scales: int, xt_start: int, xt_size: int, **kwargs):
        super().__init__(**kwargs)
        self.scale_pos = scale_pos
        self.n_scales = n_scales
        self.xt_start = xt_start
        self.xt_end = xt_start + xt_size
        self.log_scalors = nn.Parameter(torch.zeros(n_scales))
        self.schedule = None

    def attach_schedule(self, schedule: nn.Module) -> None:
        """Share the denoiser's :class:`~imagebart.diffusion.schedule.MultinomialSchedule`."""
        if schedule.n_scales != self.n_scales:
            raise ValueError(f"model.params.transformer_config.params.n_scales={self.n_scales} but "
                             f"model.params.n_scales={schedule.n_scales}; set both to the same T")
        self.schedule = schedule

    def add_residual(self, logits, src, offset):
        if self.schedule is None:
            raise RuntimeError("call attach_schedule(schedule) before running ResidualScaledXTransformer")
        t = src[:, self.scale_pos]  # (b,)  scale token in 1..T
        # checked once per pass (offset 0), not at every cached step: it syncs with the device
        if offset == 0 and ((t < 1).any() or (t > self.n_scales).any()):
            raise ValueError(
                f"scale token at src[:, {self.scale_pos}] must be in 1..{self.n_scales}"
            )
        positions = slice(self.xt_start + offset, self.xt_start + offset + logits.shape[1])
        x_t = F.one_hot(src[:, positions], self.output_vocabulary)  # (b, n, k)
        alpha_t = self.schedule.alphas[t].view(-1, 1, 1)  # (b, 1, 1)
        residual = torch.log(alpha_t * x_t + (1 - alpha_t) / self.output_vocabulary)  # (b, n, k)
        scalors = torch.exp(self.log_scalors[t - 1]).view(-1, 1, 1)  # (b, 1, 1)
        return logits * scalors + residual


# state-dict layout


def _refuse_other_layout(module, state_dict, prefix, *args):
    """A state dict of the other numerics (2021 or 2.x) would load half its weights or fail
    deep in torch: name the fix instead. Renaming 2021 checkpoints is imagebart.loading's job."""
    own = [k[len(prefix):] for k in state_dict if k.startswith(prefix)]
    if is_legacy_state_dict(own):
        raise ValueError("this state dict uses the original's 2021 x-transformers names; load it through "
                         "imagebart.loading (which renames it and builds the network with legacy_2021: true)")
    if "decoder.attn_layers.final_norm.bias" in own and not module.legacy_2021:
        raise ValueError("this state dict comes from a legacy_2021 network (norms with bias); "
                         "build the transformer with legacy_2021: true to load it")
    if "decoder.attn_layers.final_norm.gamma" in own and module.legacy_2021:
        raise ValueError("this state dict comes from a network built without legacy_2021; "
                         "set legacy_2021: false to load it")
