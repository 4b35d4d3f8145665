"""The reverse transitions p_θ(x_{t-1} | x_t) as Lightning modules.

A denoiser holds three parts and only wires them together: a network with the
denoising-network interface (:class:`~imagebart.modules.xtransformers.x_transformer.XTransformer`,
its residual-scaled variant, or the decoder-only :class:`~imagebart.modules.transformer.mingpt.GPT`
of the last scale), the schedule (:mod:`imagebart.diffusion`, one module shared with the network)
and the frozen first stage. One training step: encode x_0, :meth:`corrupt` it into
(x_{t-1}, x_t, t, posterior), run the network teacher-forced, take :func:`denoising_loss`.
Sampling runs :func:`~imagebart.modules.autoregressive.sample_tokens` on the network.

``DenoisingXTransformer`` and ``DecoderOnlyDenoiser`` keep the original's config targets and
the signatures of its ``forward``; the original's public methods (``get_scales``,
``shared_step``, ``compute_loss``, ``sample``, ``sample_single_scale``, ``temperature_range`` …)
are thin wrappers over the calls above.

Legend: B batch, L tokens per image (h·w), K codes, T n_scales.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Optional

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from imagebart.checkpoint_record import RECORD_KEY, check_hparams, make_record, verify_digest
from imagebart.diffusion.losses import bits_per_token, denoising_loss
from imagebart.diffusion.multinomial import Corruption
from imagebart.diffusion.multinomial import corrupt as draw_corruption
from imagebart.diffusion.schedule import MultinomialSchedule
from imagebart.loading import check_schedule_record, load_weights, network_config_for, read_state_dict, record_schedule
from imagebart.lr_scheduler import adamw_with_schedule
from imagebart.models.image_logs import denoiser_image_logs
from imagebart.models.original_api import OriginalDenoiserAPI
from imagebart.models.inputs import clean_tokens_and_scales
from imagebart.modules.autoregressive import DEFAULT_GAMMA, keep_guide, sample_tokens
from imagebart.modules.conditioners import drop_condition
from imagebart.modules.ema import LitEma
from imagebart.util import check_positive_int, instantiate_from_config, is_integer, is_number

logger = logging.getLogger(__name__)


class DenoisingTransformer(OriginalDenoiserAPI, pl.LightningModule):
    """p_θ(x_{t-1} | x_t) for one scale t (``single_scale``) or for every t (joint training)."""

    def __init__(self, transformer_config, first_stage_config, n_scales: int, ckpt_path=None,
                 ignore_keys=(), first_stage_key: str = "image", scheduler_config=None,
                 monitor: Optional[str] = "val/loss", top_k: Optional[int] = None,
                 rescale_transformer_logits: bool = False, sos_token: int = 0, alpha: float = 0.0,
                 soft_only: bool = False, redraw_prob=None, use_ema: bool = False,
                 conditioner_config=None, conditioner_key: Optional[str] = None,
                 single_scale: Optional[int] = None, use_past_for_sampling: bool = True,
                 schedule_curves=None, first_stage_model=None, cond_drop_prob: float = 0.0):
        super().__init__()
        check_positive_int("model.params.n_scales", n_scales)
        if single_scale is not None and (not is_integer(single_scale) or not 1 <= single_scale <= n_scales):
            raise ValueError(f"model.params.single_scale must be an integer in 1..n_scales={n_scales} (or absent "
                             f"for joint training), got {single_scale!r}")
        if top_k is not None:
            check_positive_int("model.params.top_k (or null for no top-k filtering)", top_k)
        check_positive_int("model.params.sos_token", sos_token, minimum=0)
        if rescale_transformer_logits:
            raise ValueError("rescale_transformer_logits: true was dropped by the original too")
        alpha = 1.0 if soft_only else alpha  # the original's soft_only means alpha = 1
        if not is_number(alpha) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"model.params.alpha (weight of the soft loss) must be a number in [0, 1], got {alpha!r}")
        if not is_number(cond_drop_prob) or not 0.0 <= cond_drop_prob < 1.0:
            raise ValueError(f"model.params.cond_drop_prob (how often training drops the condition, for "
                             f"classifier-free guidance) must be a number in [0, 1), got {cond_drop_prob!r}")
        self.n_scales, self.single_scale, self.alpha = n_scales, single_scale, float(alpha)
        self.cond_drop_prob = float(cond_drop_prob)
        self.redraw_prob, self.top_k = redraw_prob, top_k
        self.first_stage_key, self.conditioner_key = first_stage_key, conditioner_key
        self.use_past_for_sampling = use_past_for_sampling
        if monitor is not None:
            self.monitor = monitor
        self.scheduler_config = scheduler_config
        self.learning_rate = 1e-4  # main.py sets the scaled rate
        self.schedule = MultinomialSchedule.from_redraw_prob(redraw_prob, n_scales, curves=schedule_curves)
        self.register_buffer("sos_token", torch.tensor([sos_token]))
        self.register_state_dict_post_hook(record_schedule)
        self.register_load_state_dict_pre_hook(check_schedule_record)

        # first_stage_model: an already built VQGAN to share (a chain builds one for all scales)
        if first_stage_model is None:
            first_stage_model = instantiate_from_config(first_stage_config)
        self.first_stage_model = first_stage_model.freeze()
        self.first_stage_has_weights = bool(first_stage_config.get("params", {}).get("ckpt_path"))
        self.latent_shape = self.first_stage_model.latent_shape  # (h, w)
        self.conditioner = None
        if conditioner_config == "__is_first_stage__":
            self.conditioner = self.first_stage_model
        elif conditioner_config is not None:
            self.conditioner = instantiate_from_config(conditioner_config).eval()
        if self.cond_drop_prob > 0 and not hasattr(self.conditioner, "null_condition"):
            raise ValueError("model.params.cond_drop_prob > 0 needs a conditioner with a null condition (e.g. "
                             f"ClassProvider with n_classes); conditioner_config is {conditioner_config!r}")

        state_dict = None
        if ckpt_path is not None:  # read first: 2021 weights need the 2021-compatible network
            state_dict = read_state_dict(ckpt_path, ignore_keys)
            transformer_config = network_config_for(transformer_config, state_dict, ckpt_path)
        self.network_config = OmegaConf.to_container(OmegaConf.create(transformer_config), resolve=True)
        self.transformer = instantiate_from_config(transformer_config)
        self.transformer.sos_token = int(sos_token)
        if hasattr(self.transformer, "attach_schedule"):  # the residual-scaled network reads α_t
            self.transformer.attach_schedule(self.schedule)
        self._check_fits()
        self.use_ema = use_ema
        if use_ema:
            self.transformer_ema = LitEma(self.transformer)
        if state_dict is not None:
            load_weights(self, state_dict, ckpt_path)
            self.first_stage_has_weights |= any(k.startswith("first_stage_model.") for k in state_dict)
        if self.single_scale == 1 and self.alpha > 0:
            logger.warning("scale 1 predicts the data: alpha > 0 trains it on the posterior (soft loss)")
        logger.info("%s: betas %s", type(self).__name__, [round(b, 4) for b in self.schedule.betas.tolist()])

    def _check_fits(self) -> None:
        """Vocabulary, sequence-length and schedule mistakes, named before training starts."""
        net, k, c = self.transformer, self.num_codes, self.conditioner
        n_classes = c.vocabulary_needed(self.cond_drop_prob > 0) if hasattr(c, "vocabulary_needed") else 0  # class ids
        in_key, out_key = net.vocabulary_keys
        if net.output_vocabulary != k:
            raise ValueError(f"transformer_config.params.{out_key}={net.output_vocabulary} must equal the first "
                             f"stage's codebook size K={k} (the length of its remap list, or n_embed)")
        if net.input_vocabulary < max(k, n_classes, self.n_scales + 1):
            raise ValueError(f"transformer_config.params.{in_key}={net.input_vocabulary} must be >= max(K={k}, "
                             f"classes={n_classes}, n_scales+1={self.n_scales + 1}): scale, class and code tokens "
                             "share the input vocabulary" + (" (classes count the null token of cond_drop_prob)"
                                                              if self.cond_drop_prob > 0 else ""))
        net.check_fits(self.tokens_per_image, getattr(c, "condition_length", 0 if c is None else 1))
        if not net.reads_x_t:
            if self.single_scale != self.n_scales:
                raise ValueError(f"a decoder-only network models the last scale only: single_scale must equal "
                                 f"n_scales={self.n_scales}, got {self.single_scale}")
            if not self.schedule.ends_in_noise:
                raise ValueError(f"a decoder-only network ignores x_T, which needs beta_T = 1 (x_T pure noise); "
                                 f"redraw_prob={self.redraw_prob!r} gives "
                                 f"beta_T={float(self.schedule.betas[-1]):.4f}")

    def hparams_record(self) -> dict:
        """What fixes the meaning of the weights; checkpoints record it, loading compares it."""
        return {"denoiser": type(self).__name__, "n_scales": self.n_scales, "single_scale": self.single_scale,
                "alphas_cumprod": [round(a, 6) for a in self.schedule.alphas_cumprod.tolist()],
                "num_codes": self.num_codes, "latent_shape": list(self.latent_shape),
                "conditional": self.conditioner is not None, "network": self.network_config,
                **({"cond_drop_prob": self.cond_drop_prob} if self.cond_drop_prob > 0 else {}),
                **({"tokenizer_sha256": self.conditioner.tokenizer_sha256} if hasattr(self.conditioner, "tokenizer_sha256")
                   else {})}

    def on_save_checkpoint(self, checkpoint):
        checkpoint[RECORD_KEY] = make_record(checkpoint["state_dict"], self.hparams_record())

    def on_load_checkpoint(self, checkpoint):
        """Resuming: the weights must be intact and the config must still build the same model."""
        if not self.check_resumed_checkpoint:
            return
        source = getattr(self._trainer, "ckpt_path", None) or "being resumed"
        record = checkpoint.get(RECORD_KEY)
        verify_digest(record, checkpoint["state_dict"], source)
        check_hparams(record, self.hparams_record(), source, "the config",
                      "resume with the config it was trained with, or pass --ignore_checkpoint_record to "
                      "main.py to resume with the edited one anyway")

    check_resumed_checkpoint = True  # main.py --ignore_checkpoint_record switches it off

    def on_fit_start(self):
        if not self.first_stage_has_weights and self.trainer.ckpt_path is None:
            raise ValueError("first_stage_config.params.ckpt_path is null: the denoiser needs a trained VQGAN "
                             "(e.g. vqgan/vqgan-ffhq.ckpt, or the demo's models/demo/vqgan.ckpt)")

    # what the model is

    @property
    def num_codes(self) -> int:
        """K: the (remapped) codebook size of the first stage."""
        return self.first_stage_model.num_codes

    @property
    def tokens_per_image(self) -> int:
        """L = h·w of the first stage's latent grid."""
        return self.latent_shape[0] * self.latent_shape[1]

    # EMA

    @contextmanager
    def ema_scope(self, context=None):
        """Run the body with the EMA weights in the network, then restore the raw ones."""
        if self.use_ema:
            self.transformer_ema.store(self.transformer.parameters())
            self.transformer_ema.copy_to(self.transformer)
            if context is not None:
                logger.info("%s: switched to EMA weights", context)
        try:
            yield None
        finally:
            if self.use_ema:
                self.transformer_ema.restore(self.transformer.parameters())

    def optimizer_step(self, *args, **kwargs):
        """The EMA follows every optimizer step at once, so a checkpoint saved at the end of a batch
        holds weights and EMA of the same step (the original also updated after validation batches)."""
        super().optimizer_step(*args, **kwargs)
        if self.use_ema:
            self.transformer_ema(self.transformer)

    # inputs

    def get_input(self, batch, key):
        x = batch[key]
        if x.dim() == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            x = x.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
        return x.to(memory_format=torch.contiguous_format).float()

    @torch.no_grad()
    def get_h(self, x):
        """Pre-quantisation latents of images x (B, 3, H, W)."""
        return self.first_stage_model.encode_to_prequant(x)

    @torch.no_grad()
    def encode_tokens(self, x) -> torch.Tensor:
        """x_0 (B, L) of images x (B, 3, H, W)."""
        return self.first_stage_model.encode_tokens(x)

    @torch.no_grad()
    def get_conditioning(self, batch):
        """Conditioning tokens (B, C): a class token, or another image's codes."""
        if self.conditioner is self.first_stage_model:
            c = self.get_input(batch, self.conditioner_key).to(self.device)
            return self.encode_tokens(c)
        cond = self.conditioner(batch).to(self.device)
        vocabulary = self.transformer.input_vocabulary
        if cond.min() < 0 or cond.max() >= vocabulary:
            raise ValueError(f"conditioning tokens must lie in 0..{vocabulary - 1} (the encoder vocabulary); got "
                             f"values {cond.min().item()}..{cond.max().item()} from {self.conditioner_key or 'the batch'}")
        return cond

    def network_condition(self, x_t, t, cond=None) -> torch.Tensor:
        """What the network reads: ``[t, (cond…), x_t]``, or ``[T, (cond…)]`` for the decoder-only kind."""
        parts = [t.reshape(-1, 1).to(x_t)] + ([] if cond is None else [cond.to(x_t)])
        return torch.cat(parts + ([x_t] if self.transformer.reads_x_t else []), dim=1)

    def network_mask(self, cond) -> Optional[torch.Tensor]:
        """(B, S) False at padding of :meth:`network_condition`'s input (caption tokens), else None."""
        if cond is None or not hasattr(self.conditioner, "condition_mask"):
            return None
        mask = self.conditioner.condition_mask(cond)  # (B, C)
        ones = mask.new_ones(mask.shape[0], 1 + (self.tokens_per_image if self.transformer.reads_x_t else 0))
        return torch.cat((ones[:, :1], mask, ones[:, 1:]), dim=1)

    # training

    def draw_scales(self, batch_size: int, device, force_random: bool = False) -> torch.Tensor:
        """t for each example: the trained scale, or (joint training) one random t per batch."""
        if self.single_scale is not None:
            return torch.full((batch_size,), self.single_scale, dtype=torch.long, device=device)
        if force_random:
            return torch.randint(1, self.n_scales + 1, (batch_size,), device=device)
        return torch.randint(1, self.n_scales + 1, (1,), device=device).expand(batch_size)

    @torch.no_grad()
    def corrupt(self, x0: torch.Tensor, t: Optional[torch.Tensor] = None) -> Corruption:
        """(x_{t-1}, x_t, t, posterior (B, L, K)) for clean tokens x0 (B, L); t (B,) drawn when not given."""
        t = self.draw_scales(x0.shape[0], x0.device) if t is None else t
        return draw_corruption(x0, t, self.schedule, self.num_codes)

    def shared_step(self, batch, batch_idx=None, split: str = "train"):
        """Loss of one batch and the logged values: corrupt x_0, predict x_{t-1}."""
        example = self.corrupt(*clean_tokens_and_scales(self, batch))  # images encoded, or pretokenized
        cond = self.get_conditioning(batch) if self.conditioner is not None else None
        if self.training and self.cond_drop_prob > 0:  # classifier-free guidance learns p(x_{t-1} | x_t) too
            cond = drop_condition(cond, self.conditioner.null_condition(len(cond), cond.device), self.cond_drop_prob)
        logits = self.transformer.teacher_forced(self.network_condition(example.x_t, example.t, cond),
                                                 example.x_prev, condition_mask=self.network_mask(cond))  # (B, L, K)
        loss, parts = denoising_loss(logits, example.x_prev, example.posterior, self.alpha)
        log = {f"{split}/loss": loss.detach(), f"{split}/loss_hard": parts["loss_hard"],
               f"{split}/loss_soft": parts["loss_soft"]}
        self._last_t = example.t[0]  # a tensor: no host sync on the training hot path
        return loss, log

    def training_step(self, batch, batch_idx):
        loss, log = self.shared_step(batch, batch_idx)
        self.log("train/loss", loss, prog_bar=True)  # per step, under the name the README gives
        self.log("train/bits_per_token", bits_per_token(log["train/loss"]))
        if self.single_scale is None:
            self.log("train/scale", self._last_t.float())
        scalors = getattr(self.transformer, "log_scalors", torch.empty(0)).detach()
        for k in range(len(scalors)) if self.single_scale is None else [self.single_scale - 1][:len(scalors)]:
            self.log(f"train/log_scalors_{k}", scalors[k])  # a single scale trains (and logs) its own only
        return loss

    def validation_step(self, batch, batch_idx):
        self._log_validation(batch, batch_idx, "val")
        if self.use_ema:
            with self.ema_scope():
                self._log_validation(batch, batch_idx, "val_ema")

    def _log_validation(self, batch, batch_idx, split):
        for key, value in self.shared_step(batch, batch_idx, split)[1].items():
            self.log(key, value, on_step=False, on_epoch=True, sync_dist=True)
            self.log(f"{key}_bits", bits_per_token(value), on_step=False, on_epoch=True, sync_dist=True)

    def configure_optimizers(self):
        return adamw_with_schedule(self.transformer, self.learning_rate, self.scheduler_config)

    @torch.no_grad()
    def log_images(self, batch, temperature=None, top_k=None, callback=None, N=4, sample=True,
                   log_diffusion=True, sample_full=None, split=None, **kwargs):
        """Image logs: see :func:`~imagebart.models.image_logs.denoiser_image_logs`."""
        with self.ema_scope():
            return denoiser_image_logs(self, batch, temperature=temperature, top_k=top_k, callback=callback, n=N,
                                       sample=sample, log_diffusion=log_diffusion, sample_full=sample_full)

    # sampling

    def resolve_top_k(self, top_k):
        """The sampling top-k: the argument, else the config's ``top_k``, capped at K."""
        k = top_k if top_k is not None else self.top_k
        return None if k is None else min(int(k), self.num_codes)

    def check_guidance(self, source: str = "this scale") -> None:
        """Guidance needs an unconditional branch: a conditional model trained with ``cond_drop_prob``."""
        if self.conditioner is None:
            raise ValueError(f"{source} is unconditional: guidance_scale needs a class-conditional chain "
                             "(use guidance_scale 1, the default)")
        if self.cond_drop_prob <= 0:
            raise ValueError(f"{source} was trained without model.params.cond_drop_prob, so it never saw the "
                             "null condition and has no unconditional branch to guide with; use guidance_scale 1, "
                             "or train with cond_drop_prob (e.g. 0.1)")

    def resolve_gamma(self, gamma=None) -> int:
        """Drafts per decoder pass this scale uses: ``gamma``, else the default, where the network reads x_t;
        a decoder-only scale samples token by token (its x_T is noise, no draft)."""
        if not self.transformer.reads_x_t:
            return 0
        return DEFAULT_GAMMA if gamma is None else int(gamma)

    @torch.no_grad()
    def sample_x_prev(self, x_t, t, cond=None, temperature: float = 1.0, top_k=None, guide=None,
                      generator=None, use_cache: bool = True, callback=None, steps=None,
                      guidance_scale: float = 1.0, gamma: Optional[int] = None,
                      known: Optional[torch.Tensor] = None, stats: Optional[dict] = None) -> torch.Tensor:
        """x_{t-1} (B, L) ~ p_θ(· | x_t) autoregressively (the first ``steps`` tokens if given).
        ``top_k`` is used as given (None: no filtering); :meth:`resolve_top_k` gives the config's.
        ``guidance_scale`` s != 1: classifier-free guidance (s = 0 runs the unconditional branch alone).
        ``gamma``: x_t drafts verified per decoder pass (exact speculative decoding; None: the
        default, 0: token by token; ignored on a decoder-only scale). ``known`` (B, L): tokens forced
        at positions >= 0 (editing keeps them), -1 elsewhere; runs of them take one pass."""
        steps = self.tokens_per_image if steps is None else steps
        gamma = self.resolve_gamma(gamma)
        proposal, certain = (x_t[:, :steps], None) if gamma > 0 else (None, None)
        if known is not None:
            certain = known[:, :steps] >= 0  # (B, steps)
            proposal = torch.where(certain, known[:, :steps], x_t[:, :steps])
            forced = keep_guide(known.clamp(min=0), known >= 0, self.transformer.output_vocabulary)  # (B, L, V)
            guide = forced if guide is None else guide + forced
        first, second = cond, None  # the conditional input, and (guided) the null one
        if guidance_scale != 1:
            self.check_guidance()
            null = self.conditioner.null_condition(len(x_t), x_t.device)  # (B, C)
            first, second = (null, None) if guidance_scale == 0 else (cond, null)
        uncond = None if second is None else self.network_condition(x_t, t, second)
        return sample_tokens(self.transformer, self.network_condition(x_t, t, first), steps, temperature=temperature,
                             top_k=top_k, guide=guide, use_cache=use_cache, generator=generator, callback=callback,
                             uncond_condition=uncond, guidance_scale=float(guidance_scale),
                             condition_mask=self.network_mask(first),
                             uncond_mask=None if second is None else self.network_mask(second),
                             proposal=proposal, certain=certain, gamma=gamma, stats=stats)

    @torch.no_grad()
    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, L) -> images (B, 3, H, W) in [-1, 1]."""
        return self.first_stage_model.decode_tokens(tokens)


class DenoisingXTransformer(DenoisingTransformer):
    """Encoder-decoder denoiser (a.k.a. BART): the encoder reads ``[t, (cond…), x_t]``, the causal
    decoder reads ``[sos, x_{t-1}[:-1]]`` and predicts x_{t-1}."""

    def __init__(self, *args, regression: bool = False, **kwargs):
        if regression:
            raise ValueError("regression: true (non-autoregressive decoding) is not supported")
        super().__init__(*args, **kwargs)

    def forward(self, x, c, scale, temp=1.0):
        """The original's call: logits (B, L, K) for x = x_{t-1} given c = ``[(cond…), x_t]``, and x."""
        return self.transformer.teacher_forced(torch.cat((scale, c), dim=1), x) / temp, x


class DecoderOnlyDenoiser(DenoisingTransformer):
    """The last scale T: x_T is pure noise, so a GPT over ``[T, (cond…), x_{T-1}]`` suffices."""

    def forward(self, z_indices, c_indices, temp=1.0):
        """The original's call: logits (B, L, K) for z = x_{T-1} given c = ``[T, (cond…)]``, and z."""
        return self.transformer.teacher_forced(c_indices, z_indices) / temp, z_indices
