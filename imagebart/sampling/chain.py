"""A stack of trained scales that samples x_T -> x_{T-1} -> ... -> x_0 and decodes the result.

One denoiser per reverse step t (scale 1 = p(x_0 | x_1) first, as in the sampling configs),
sharing ONE frozen first stage. Sampling: x_T ~ Uniform{0..K-1}^L, then for t = T..1
``x_{t-1} ~ p_θ^{t-1}(· | x_t)`` token by token with that scale's top-k and temperature, then
decode x_0. Schedules are given in sampling order (first entry = scale T), as in the original
streamlit app. Every denoiser is loaded through :func:`imagebart.loading.load_denoiser`, with
its EMA weights in the network, its linear weights stored as decode steps read them fastest
(:mod:`imagebart.sampling.layout`).

Legend: B batch, L tokens per image (h·w), K codes, T n_scales.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch

from imagebart.loading import load_denoiser
from imagebart.modules.conditioners import ClassProvider
from imagebart.modules.text import TextProvider
from imagebart.sampling.config import SamplingConfig, load_sampling_config
from imagebart.sampling.layout import decoding_layout, set_weight_layout
from imagebart.sampling.schedules import (check_gamma, check_guidance_scale, check_temperature, check_top_k,
                                           resolve_schedule)
from imagebart.util import check_positive_int, default_device, is_integer

logger = logging.getLogger(__name__)

ClassLabel = Union[None, int, str, Sequence[int], torch.Tensor]
Progress = Callable[[int, int, int], None]


@dataclass
class SampleResult:
    """What :meth:`ImageBARTChain.sample` returns."""

    tokens: torch.Tensor  # x_0 (B, L), remapped code ids
    images: torch.Tensor  # decoded x_0 (B, 3, H, W) in [-1, 1]
    intermediates: Optional[list] = None  # [x_T, x_{T-1}, ..., x_0], each (B, L), when asked
    class_label: Optional[torch.Tensor] = None  # (B,) labels used (conditional chains)
    caption: Optional[list] = None  # the B captions used (text-conditional chains)


# devices


@contextmanager
def first_stage_detached(model):
    """Temporarily take the shared first stage out of ``model`` (so ``.to()`` leaves it alone)."""
    first_stage = model._modules.get("first_stage_model")
    model._modules["first_stage_model"] = None
    try:
        yield model
    finally:
        model._modules["first_stage_model"] = first_stage


def _text_setup(model) -> tuple:
    c = model.conditioner
    return c.tokenizer_sha256, c.max_length, c.offset


# the chain


class ImageBARTChain:
    """A stack of trained scales (scale 1 first) sharing one frozen first stage."""

    def __init__(self, models: Sequence, device=None, offload: bool = False, sources: Sequence[str] = ()):
        if not models:
            raise ValueError("a chain needs at least one scale")
        self.models = list(models)
        self.n_scales = len(self.models)
        self.first_stage = self.models[0].first_stage_model
        self.device = torch.device(device) if device is not None else default_device()
        self.offload = offload
        self.quantized = None  # "int8" after imagebart.sampling.quantize.quantize_chain
        self.compiled = False  # True after compile_decoding()
        self.sources = list(sources) or [f"scale {t}" for t in range(1, self.n_scales + 1)]
        self._check()
        self.first_stage.to(self.device)
        self._placement: dict[int, torch.device] = {}
        for model in self._unique_models():
            self._place(model, torch.device("cpu") if offload else self.device)
            set_weight_layout(model.transformer, decoding_layout(self.device))

    @classmethod
    def from_sampling_config(cls, config_or_path: Union[str, Path, Mapping, SamplingConfig], device=None,
                             ema: bool = True, offload: bool = False, strict: bool = True) -> "ImageBARTChain":
        """Load every scale of a sampling config (``checkpoints:``/``configs:``, scale 1 first).

        ``strict=False`` only reports checkpoints whose record (digest, hyper-parameters) does not
        match, instead of refusing them."""
        paths = config_or_path if isinstance(config_or_path, SamplingConfig) else load_sampling_config(config_or_path)
        loaded: dict[tuple, Any] = {}
        models, sources, first_stage = [], [], None
        for index, (ckpt, config_path) in enumerate(zip(paths.checkpoints, paths.configs)):
            key = (ckpt, config_path)
            if key not in loaded:
                logger.info("scale %d: %s with %s", index + 1, ckpt, config_path)
                loaded[key] = load_denoiser(paths.load_scale_config(index), ckpt, first_stage=first_stage, ema=ema,
                                            config_source=f"{config_path} (configs[{index}] of {paths.source})",
                                            strict=strict)
                first_stage = loaded[key].first_stage_model
            models.append(loaded[key])
            sources.append(f"{config_path} (configs[{index}] of {paths.source})")
        if len(models) == 1 and models[0].single_scale is None:  # joint training: one model, every t
            models, sources = models * models[0].n_scales, sources * models[0].n_scales
        return cls(models, device=device, offload=offload, sources=sources)

    def compile_decoding(self) -> "ImageBARTChain":
        """Run decode steps through ``torch.compile`` (CUDA graphs on a GPU), see
        :mod:`imagebart.modules.static_decoding`; the same tokens, after a compile per block size."""
        if self.quantized:
            raise ValueError("compiled decoding and int8 (--quantize) do not go together: pick one")
        for model in self._unique_models():
            model.transformer.compile_decoding = True
        self.compiled = True
        return self

    def _unique_models(self) -> list:
        return list({id(m): m for m in self.models}.values())

    def _check(self) -> None:
        """Scales that do not stack: wrong order, other T, other first stage, mixed conditioning."""
        for t, (model, source) in enumerate(zip(self.models, self.sources), start=1):
            if model.n_scales != self.n_scales:
                raise ValueError(f"{source}: n_scales={model.n_scales}, but the chain has {self.n_scales} scales")
            if model.single_scale not in (None, t):
                raise ValueError(f"{source}: single_scale={model.single_scale} at position {t} of the list; "
                                 "list scale 1 first (p(x_0 | x_1)), then 2, ..., T")
            if model.num_codes != self.num_codes or model.latent_shape != self.latent_shape:
                raise ValueError(f"{source}: K={model.num_codes} codes on a {tuple(model.latent_shape)} grid, but "
                                 f"scale 1 has K={self.num_codes} on {self.latent_shape}; all scales must use "
                                 "the same first stage config")
            if type(model.conditioner) is not type(self.models[0].conditioner):
                raise ValueError(f"{source}: conditioned by {type(model.conditioner).__name__}, but scale 1 by "
                                 f"{type(self.models[0].conditioner).__name__}; all scales need the same conditioning")
            if model.conditioner is not None and not isinstance(model.conditioner, (ClassProvider, TextProvider)):
                raise ValueError(f"{source}: only class- (ClassProvider) and text-conditional (TextProvider) chains "
                                 f"can be sampled, got {type(model.conditioner).__name__}")
            if isinstance(model.conditioner, TextProvider) and _text_setup(model) != _text_setup(self.models[0]):
                raise ValueError(f"{source}: its captions are tokenized differently from scale 1's (tokenizer "
                                 "file, max_length or offset); all scales must read the same caption tokens")

    # properties

    @property
    def num_codes(self) -> int:
        """K, the remapped codebook size."""
        return self.first_stage.num_codes

    @property
    def latent_shape(self) -> tuple:
        """(h, w) of the token grid."""
        return tuple(self.first_stage.latent_shape)

    @property
    def image_size(self) -> int:
        """Side of the (square) images the first stage encodes and decodes."""
        return int(self.first_stage.encoder.resolution)

    @property
    def tokens_per_image(self) -> int:
        return self.latent_shape[0] * self.latent_shape[1]

    @property
    def is_conditional(self) -> bool:
        """Class-conditional (a class label per image)."""
        return isinstance(self.models[0].conditioner, ClassProvider)

    @property
    def is_text_conditional(self) -> bool:
        """Text-conditional (a caption per image)."""
        return isinstance(self.models[0].conditioner, TextProvider)

    @property
    def supports_guidance(self) -> bool:
        """Conditional with every scale trained with ``cond_drop_prob`` (so it has a null branch)."""
        return self.models[0].conditioner is not None and all(m.cond_drop_prob > 0 for m in self._unique_models())

    @property
    def n_classes(self) -> Optional[int]:
        """Number of class labels: the conditioner's ``n_classes``, else the smallest input vocabulary."""
        if not self.is_conditional:
            return None
        declared = self.models[0].conditioner.n_classes
        if declared is not None:
            return int(declared)
        return min(model.transformer.input_vocabulary for model in self._unique_models())

    def describe(self) -> dict:
        """A JSON-able summary (for settings files and logs)."""
        return {"n_scales": self.n_scales, "num_codes": self.num_codes, "latent_shape": list(self.latent_shape),
                "conditional": self.is_conditional, "n_classes": self.n_classes,
                **({"text_conditional": True, "caption_tokens": self.models[0].conditioner.max_length}
                   if self.is_text_conditional else {}),
                **({"quantized": self.quantized} if self.quantized else {}),
                **({"compiled_decoding": True} if self.compiled else {}),
                "scales": [{"t": t, "model": type(m).__name__, "network": type(m.transformer).__name__,
                            "weights": getattr(m, "sampling_weights", "raw"), "config_top_k": m.top_k}
                           for t, m in enumerate(self.models, start=1)]}

    # devices

    def _place(self, model, device: torch.device) -> None:
        if self._placement.get(id(model)) == device:
            return
        with first_stage_detached(model):
            model.to(device)
        self._placement[id(model)] = device

    def model_for_scale(self, t: int):
        """The denoiser of reverse step t (1..T), on the chain's device (others go to CPU when offloading)."""
        if not is_integer(t) or not 1 <= t <= self.n_scales:
            raise ValueError(f"t must be an integer in 1..{self.n_scales}, got {t!r}")
        model = self.models[t - 1]
        if self.offload:
            for other in self._unique_models():
                if other is not model:
                    self._place(other, torch.device("cpu"))
            self._place(model, self.device)
        return model

    # schedules and labels

    def top_k_schedule(self, top_k=None) -> list:
        """Effective top-k per scale in sampling order (None: each config's ``top_k``; capped at K)."""
        values = resolve_schedule(top_k, self.n_scales, "top_k", check_top_k)
        return [self.models[t - 1].resolve_top_k(k) for t, k in zip(range(self.n_scales, 0, -1), values)]

    def temperature_schedule(self, temperature=1.0) -> list:
        """Temperature per scale in sampling order."""
        return resolve_schedule(temperature, self.n_scales, "temperature", check_temperature)

    def gamma_schedule(self, gamma=None) -> list:
        """Drafts verified per decoder pass, per scale in sampling order, as each scale will use them (None: its
        default; a decoder-only scale draws token by token)."""
        values = resolve_schedule(gamma, self.n_scales, "gamma", check_gamma)
        models = [self.models[t - 1] for t in range(self.n_scales, 0, -1)]
        return [m.resolve_gamma(g) for m, g in zip(models, values)]

    def guidance_schedule(self, guidance_scale=1.0) -> list:
        """Classifier-free guidance scale per scale in sampling order; every scale guided (s != 1) must
        have been trained with ``cond_drop_prob``."""
        values = resolve_schedule(guidance_scale, self.n_scales, "guidance_scale", check_guidance_scale)
        for t, value in zip(range(self.n_scales, 0, -1), values):
            if value != 1:
                self.models[t - 1].check_guidance(f"scale {t} ({self.sources[t - 1]})")
        return values

    def class_tokens(self, class_label: ClassLabel, batch_size: int,
                     generator: Optional[torch.Generator] = None) -> Optional[torch.Tensor]:
        """Labels (B,) on the chain's device: one int for the batch, one per image, or "random"."""
        if not self.is_conditional:
            if class_label is not None:
                kind = "text-conditional (pass caption)" if self.is_text_conditional else "unconditional"
                raise ValueError(f"class_label was given but the chain is {kind}")
            return None
        n = self.n_classes
        if class_label is None:
            raise ValueError(f"the chain is class-conditional: pass class_label (an int in 0..{n - 1}, one per "
                             "image, or 'random')")
        if isinstance(class_label, str):
            if class_label != "random":
                raise ValueError(f"class_label must be an int, a list of ints or 'random', got {class_label!r}")
            gen_device = generator.device if generator is not None else self.device
            labels = torch.randint(0, n, (batch_size,), generator=generator, device=gen_device)
        else:
            labels = torch.as_tensor(class_label).reshape(-1)
            if labels.is_floating_point() or labels.dtype == torch.bool:
                raise ValueError(f"class_label must hold integers, got {labels.dtype}")
            if labels.numel() == 1:
                labels = labels.expand(batch_size)
            if labels.numel() != batch_size:
                raise ValueError(f"class_label must be one label or one per image ({batch_size}), "
                                 f"got {labels.numel()}")
            if labels.min() < 0 or labels.max() >= n:
                raise ValueError(f"class_label values must lie in 0..{n - 1}, got {labels.tolist()}")
        return labels.long().to(self.device)

    def caption_tokens(self, caption, batch_size: int) -> Optional[torch.Tensor]:
        """Caption tokens (B, C) on the chain's device: one caption for the batch, or one per image."""
        if not self.is_text_conditional:
            if caption is not None:
                raise ValueError("caption was given but the chain is not text-conditional")
            return None
        if caption is None:
            raise ValueError("the chain is text-conditional: pass caption (one string, or one per image)")
        captions = [caption] * batch_size if isinstance(caption, str) else list(caption)
        if len(captions) != batch_size or not all(isinstance(c, str) and c.strip() for c in captions):
            raise ValueError(f"caption must be one non-empty string or {batch_size} of them (one per image), got "
                             f"{caption!r}")
        return self.models[0].conditioner.tokenize(captions).to(self.device)

    def condition(self, class_label, caption, batch_size: int, generator=None):
        """(the condition tokens (B, C) or None, the labels (B,) or None, the captions or None)."""
        labels = self.class_tokens(class_label, batch_size, generator)  # (B,) or None
        captions = [caption] * batch_size if isinstance(caption, str) else caption
        tokens = self.caption_tokens(captions, batch_size)  # (B, C) or None
        if labels is not None:
            return labels[:, None], labels, None
        return tokens, None, None if tokens is None else list(captions)

    # tokens <-> images

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> x_0 (B, L), remapped code ids."""
        side = self.image_size
        if images.dim() != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (side, side):
            raise ValueError(f"images must be (B, 3, {side}, {side}) for this chain, got {tuple(images.shape)}")
        return self.first_stage.encode_tokens(images.to(self.device, torch.float32))  # (B, L)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """x_0 (B, L) -> images (B, 3, H, W) in [-1, 1]."""
        if tokens.dim() != 2 or tokens.shape[1] != self.tokens_per_image:
            raise ValueError(f"tokens must be (B, {self.tokens_per_image}), got {tuple(tokens.shape)}")
        return self.first_stage.decode_tokens(tokens.to(self.device))  # (B, 3, H, W)

    # sampling

    def make_generator(self, seed: int) -> torch.Generator:
        """A seeded generator on the chain's device (sampling draws must come from that device)."""
        return torch.Generator(device=self.device).manual_seed(int(seed))

    @torch.no_grad()
    def sample(self, batch_size: int, top_k=None, temperature=1.0, class_label: ClassLabel = None,
               generator: Optional[torch.Generator] = None, return_intermediates: bool = False,
               progress: Optional[Progress] = None, use_cache: bool = True, guidance_scale=1.0,
               caption=None, gamma=None) -> SampleResult:
        """Sample ``batch_size`` images: x_T uniform, t = T..1 with per-scale top-k / temperature, decode.

        ``top_k``/``temperature``/``guidance_scale``: one value or one per scale in sampling order
        (scale T first). ``guidance_scale`` s: classifier-free guidance, l_u + s·(l_c - l_u); 1 (the
        default) is plain conditional sampling, 0 the unconditional branch alone. ``caption``
        (text-conditional chains): one string for the batch, or one per image. ``gamma``: x_t drafts
        verified per decoder pass (exact speculative decoding; None: the default, 0: token by token).
        ``progress(t, step, steps)`` is called before each token of scale t and once with
        ``step == steps`` when the scale is done. Draws come from ``generator`` (on the chain's
        device, see :meth:`make_generator`), so a seeded generator reproduces a run.
        """
        check_positive_int("batch_size", batch_size)
        if generator is not None and generator.device.type != self.device.type:
            raise ValueError(f"generator is on {generator.device}, the chain samples on {self.device}; "
                             "use chain.make_generator(seed)")
        top_ks = self.top_k_schedule(top_k)
        temperatures = self.temperature_schedule(temperature)
        guidances = self.guidance_schedule(guidance_scale)
        gammas = self.gamma_schedule(gamma)
        cond, labels, captions = self.condition(class_label, caption, batch_size, generator)  # cond (B, C)
        steps = self.tokens_per_image

        x_t = torch.randint(0, self.num_codes, (batch_size, steps), generator=generator,
                            device=self.device)  # x_T (B, L)
        intermediates = [x_t] if return_intermediates else None
        for i, t in enumerate(range(self.n_scales, 0, -1)):
            model = self.model_for_scale(t)
            t_batch = torch.full((batch_size,), t, dtype=torch.long, device=self.device)  # (B,)
            callback = None if progress is None else (lambda step, t=t: progress(t, step, steps))
            x_t = model.sample_x_prev(x_t, t_batch, cond, temperature=temperatures[i], top_k=top_ks[i],
                                      generator=generator, use_cache=use_cache, callback=callback,
                                      guidance_scale=guidances[i], gamma=gammas[i])  # x_{t-1} (B, L)
            if progress is not None:
                progress(t, steps, steps)
            if return_intermediates:
                intermediates.append(x_t)
        images = self.decode(x_t).float()
        return SampleResult(tokens=x_t, images=images, intermediates=intermediates, class_label=labels,
                            caption=captions)
