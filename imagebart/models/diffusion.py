"""The reverse transitions p_θ^{t-1}(x_{t-1} | x_t) as Lightning modules.

``DenoisingXTransformer`` (encoder-decoder, scales t < T) and ``DecoderOnlyDenoiser`` (a GPT for
the last scale, where x_T is pure noise) keep the original's config targets, parameters and
public methods. The maths lives elsewhere: the schedule and posterior in
:mod:`imagebart.diffusion`, the sampling loops in :mod:`imagebart.sampling.autoregressive`;
these classes only wire the frozen first stage, the network, EMA and logging together.

Legend: B batch, L tokens per image (h·w), K codes, T n_scales.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Optional

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch.optim.lr_scheduler import LambdaLR

from imagebart.checkpoint_io import load_state_dict
from imagebart.diffusion.losses import bits_per_token, denoising_loss
from imagebart.diffusion.multinomial import q_posterior, q_sample_chain
from imagebart.diffusion.schedule import MultinomialSchedule
from imagebart.images import make_grid
from imagebart.modules.ema import LitEma
from imagebart.modules.xtransformers.legacy import (
    convert_legacy_checkpoint,
    is_legacy_state_dict,
    needs_legacy_network,
)
from imagebart.sampling.autoregressive import sample_decoder_only, sample_encoder_decoder
from imagebart.util import instantiate_from_config

logger = logging.getLogger(__name__)


def adapt_to_checkpoint(transformer_config, state_dict: dict, source="checkpoint"):
    """(transformer config, state dict) ready to build and load: an original-format (2021
    x-transformers) checkpoint gets ``legacy_2021: true`` and our parameter / EMA names."""
    if not needs_legacy_network(state_dict, prefix="transformer."):
        return transformer_config, state_dict
    logger.info("%s holds the original's (2021) network: building the 2021-compatible transformer", source)
    transformer_config = OmegaConf.merge(transformer_config, {"params": {"legacy_2021": True}})
    if is_legacy_state_dict(state_dict, prefix="transformer."):
        state_dict = convert_legacy_checkpoint(state_dict, "xtransformer")
    return transformer_config, state_dict


class DenoisingTransformer(pl.LightningModule):
    """What both denoisers share: first stage, schedule, corruption, loss, EMA, optimiser."""

    def __init__(self, transformer_config, first_stage_config, n_scales: int, ckpt_path=None,
                 ignore_keys=(), first_stage_key: str = "image", scheduler_config=None,
                 monitor: Optional[str] = "val/loss", top_k: Optional[int] = None,
                 rescale_transformer_logits: bool = False, sos_token: int = 0, alpha: float = 0.0,
                 soft_only: bool = False, redraw_prob=None, use_ema: bool = False,
                 conditioner_config=None, conditioner_key: Optional[str] = None,
                 single_scale: Optional[int] = None, use_past_for_sampling: bool = True,
                 schedule_curves=None, first_stage_model=None):
        super().__init__()
        if not isinstance(n_scales, int) or n_scales < 1:
            raise ValueError(f"n_scales must be a positive integer, got {n_scales!r}")
        if single_scale is not None and not 1 <= single_scale <= n_scales:
            raise ValueError(f"single_scale must be in 1..n_scales={n_scales} (or absent for joint training), "
                             f"got {single_scale}")
        if redraw_prob is None:
            raise ValueError("redraw_prob is required: 'geometric', a float, 'alphacum:...' or "
                             "'[dset_]bernoulli_{FID|PSIM}'")
        if rescale_transformer_logits:
            raise ValueError("rescale_transformer_logits: true was dropped by the original too")
        if soft_only:
            alpha = 1.0
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha (weight of the soft loss) must be in [0, 1], got {alpha}")
        self.n_scales = n_scales
        self.single_scale = single_scale
        self.alpha = float(alpha)
        self.soft_only = soft_only
        self.redraw_prob = redraw_prob
        self.first_stage_key = first_stage_key
        self.conditioner_key = conditioner_key
        self.conditioner_config = conditioner_config
        self.use_past_for_sampling = use_past_for_sampling
        if monitor is not None:
            self.monitor = monitor
        self.scheduler_config = scheduler_config
        self.use_scheduler = scheduler_config is not None
        self.learning_rate = 1e-4  # main.py sets the scaled rate
        self.register_buffer("sos_token", torch.tensor([sos_token]))

        # first_stage_model: an already built VQGAN to share (a chain builds one for all scales)
        if first_stage_model is None:
            first_stage_model = instantiate_from_config(first_stage_config)
        self.first_stage_model = first_stage_model.freeze()
        self.first_stage_has_weights = bool(first_stage_config.get("params", {}).get("ckpt_path"))
        ddconfig = first_stage_config["params"]["ddconfig"]
        side = ddconfig["resolution"] // 2 ** (len(ddconfig["ch_mult"]) - 1)
        self.latent_hw = (side, side)
        self.conditioner = self._build_conditioner(conditioner_config)
        state_dict = None
        if ckpt_path is not None:
            # read first: an original-format checkpoint needs the 2021-compatible network
            state_dict = self._read_checkpoint(ckpt_path, ignore_keys)
            transformer_config, state_dict = adapt_to_checkpoint(transformer_config, state_dict, ckpt_path)
        self.transformer = instantiate_from_config(transformer_config)

        self.schedule = MultinomialSchedule.from_redraw_prob(redraw_prob, n_scales, curves=schedule_curves)
        self.register_buffer("alphats", self.schedule.alphas.float().clone())
        self.register_buffer("alphacum", self.schedule.alphas_cumprod.float().clone())
        if hasattr(self.transformer, "set_alphas"):
            self.transformer.set_alphas(self.alphats)
        self.top_k = top_k
        self._check_fits()

        self.use_ema = use_ema
        if use_ema:
            self.transformer_ema = LitEma(self.transformer)
        if state_dict is not None:
            self._load_checkpoint_state(state_dict, ckpt_path)
        if self.single_scale == 1 and self.alpha > 0:
            logger.warning("scale 1 predicts the data: alpha > 0 trains it on the posterior (soft loss)")
        logger.info("%s: betas %s", type(self).__name__, [round(b, 4) for b in self.temperature_range.tolist()])

    # construction helpers

    def _build_conditioner(self, config):
        if config is None:
            return None
        if config == "__is_first_stage__":
            return self.first_stage_model
        return instantiate_from_config(config).eval()

    @property
    def num_codes(self) -> int:
        """K: the (remapped) codebook size of the first stage."""
        return int(self.first_stage_model.quantize.re_embed)

    @property
    def temperature_range(self) -> torch.Tensor:
        """β_0..β_T under the original's (misleading) name."""
        return self.schedule.betas

    @property
    def tokens_per_image(self) -> int:
        """L = h·w of the first stage's latent grid."""
        return self.latent_hw[0] * self.latent_hw[1]

    @property
    def encoder_vocabulary(self) -> Optional[int]:
        """How many token ids the network reads (scale, class and code tokens share it)."""
        encoder = getattr(self.transformer, "encoder", None)
        if encoder is not None:
            return encoder.num_tokens
        return self.transformer.tok_emb.num_embeddings  # GPT: input_vocab_size, else vocab_size

    def _check_fits(self) -> None:
        """Vocabulary and sequence-length mistakes, named before training starts."""
        k = self.num_codes
        n_cond = 1 if self.conditioner is not None else 0
        n_classes = (getattr(self.conditioner, "n_classes", None) or 0) if self.conditioner is not None else 0
        if self.output_vocabulary != k:
            raise ValueError(f"transformer_config.params.{self.output_vocabulary_key}={self.output_vocabulary} must "
                             f"equal the first stage's codebook size K={k} (the length of its remap list, or n_embed)")
        if self.encoder_vocabulary < max(k, n_classes, self.n_scales + 1):
            raise ValueError(f"transformer_config.params.{self.input_vocabulary_key}={self.encoder_vocabulary} must be "
                             f">= max(K={k}, classes={n_classes}, n_scales+1={self.n_scales + 1}): scale, class "
                             "and code tokens share the input vocabulary")
        self._check_sequence_lengths(self.tokens_per_image, n_cond)

    output_vocabulary_key = input_vocabulary_key = "?"  # config keys named in the errors

    @property
    def output_vocabulary(self) -> int:
        """How many codes the network predicts (must be K)."""
        raise NotImplementedError

    def _check_sequence_lengths(self, length: int, n_cond: int) -> None:
        raise NotImplementedError

    @staticmethod
    def _read_checkpoint(path, ignore_keys=()) -> dict:
        state_dict = load_state_dict(path)
        return {k: v for k, v in state_dict.items() if not any(k.startswith(i) for i in ignore_keys)}

    def init_from_ckpt(self, path, ignore_keys=()):
        """Load a denoiser checkpoint (ours or the original's) non-strictly, reporting what differs."""
        self._load_checkpoint_state(self._read_checkpoint(path, ignore_keys), path)

    def _load_checkpoint_state(self, state_dict: dict, source) -> None:
        if is_legacy_state_dict(state_dict, prefix="transformer."):
            state_dict = convert_legacy_checkpoint(state_dict, "xtransformer")
        if "alphacum" in state_dict and state_dict["alphacum"].shape != self.alphacum.shape:
            raise ValueError(f"{source} was trained with {state_dict['alphacum'].numel() - 1} scales, but the config "
                             f"has n_scales={self.n_scales}")
        try:
            missing, unexpected = self.load_state_dict(state_dict, strict=False)
        except RuntimeError as err:  # shape mismatches: name the file and the config to check
            raise ValueError(f"checkpoint {source} does not fit the model built from the config "
                             f"(check transformer_config / first_stage_config dimensions): {err}") from err
        logger.info("restored %s: %d missing and %d unexpected keys", source, len(missing), len(unexpected))
        if missing:
            logger.warning("keys missing from %s: %s", source, missing[:20])
        if unexpected:
            logger.warning("unexpected keys in %s: %s", source, unexpected[:20])
        if any(k.startswith("first_stage_model.") for k in state_dict):
            self.first_stage_has_weights = True

    def on_fit_start(self):
        if not self.first_stage_has_weights and self.trainer.ckpt_path is None:
            raise ValueError(
                "first_stage_config.params.ckpt_path is null: the denoiser needs a trained VQGAN "
                "(e.g. vqgan/vqgan-ffhq.ckpt, or the demo's models/demo/vqgan.ckpt)"
            )

    # EMA

    @contextmanager
    def ema_scope(self, context=None):
        """Run the body with the EMA weights in the transformer, then restore the raw ones."""
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

    def on_train_batch_end(self, *args, **kwargs):
        # (the original also updated after validation batches; we only learn from training)
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
    def get_conditioning(self, batch):
        """Conditioning tokens (B, C): a class token, or another image's codes."""
        if self.conditioner_key is not None and self.conditioner is self.first_stage_model:
            c = self.get_input(batch, self.conditioner_key).to(self.device)
            _, _, info = self.conditioner.encode(c)
            return info[2].reshape(c.shape[0], -1)
        cond = self.conditioner(batch).to(self.device)
        vocabulary = self.encoder_vocabulary
        if vocabulary is not None and (cond.min() < 0 or cond.max() >= vocabulary):
            raise ValueError(f"conditioning tokens must lie in 0..{vocabulary - 1} (the encoder vocabulary); "
                             f"got values {cond.min().item()}..{cond.max().item()} from {self.conditioner_key or 'the batch'}")
        return cond

    def draw_scales(self, batch_size: int, device, force_random: bool = False) -> torch.Tensor:
        """t for each example: the trained scale, or (joint training) one random t per batch."""
        if self.single_scale is not None:
            return torch.full((batch_size,), self.single_scale, dtype=torch.long, device=device)
        if force_random:
            return torch.randint(1, self.n_scales + 1, (batch_size,), device=device)
        return torch.randint(1, self.n_scales + 1, (1,), device=device).expand(batch_size)

    @torch.no_grad()
    def get_scales(self, pre_quant, force_random=False):
        """Quantise, corrupt step by step, and pick (x_{t-1}, x_t) and the posterior.

        Returns the original's tuple ``(zq_x, zq_c, x_prev, x_t, t, None, posterior)`` with
        x_prev, x_t (B, L), t (B, 1) and the posterior (B, K, h, w).
        """
        b = pre_quant.shape[0]
        scale = self.draw_scales(b, pre_quant.device, force_random)  # (B,)
        zq, _, info = self.first_stage_model.quantize(pre_quant)
        x0 = info[2].reshape(b, -1)  # (B, L)
        chain = q_sample_chain(x0, self.schedule, self.num_codes)  # (T+1, B, L)
        batch_index = torch.arange(b, device=x0.device)
        x_prev = chain[scale - 1, batch_index]  # (B, L)
        x_t = chain[scale, batch_index]  # (B, L)
        posterior = q_posterior(x0, x_t, scale, self.schedule, self.num_codes)  # (B, L, K)
        h, w = zq.shape[2], zq.shape[3]
        posterior = posterior.transpose(1, 2).reshape(b, self.num_codes, h, w)  # (B, K, h, w)
        qshape = (b, h, w, zq.shape[1])
        zq_x = self.first_stage_model.quantize.get_codebook_entry(x_prev.reshape(-1), qshape)
        zq_c = self.first_stage_model.quantize.get_codebook_entry(x_t.reshape(-1), qshape)
        return zq_x, zq_c, x_prev, x_t, scale[:, None], None, posterior

    # loss

    def compute_loss(self, logits, targets, target_logits, temperature=None, recp_loss_weights=None,
                     split="train"):
        """alpha·KL(posterior ‖ p_θ) + (1-alpha)·CE(p_θ, x_{t-1}); returns (loss, log dict)."""
        if target_logits.dim() == 4:  # (B, K, h, w) -> (B, L, K)
            target_logits = target_logits.flatten(2).transpose(1, 2)
        loss, parts = denoising_loss(logits, targets, target_logits, self.alpha)
        log = {f"{split}/loss": loss.detach(), f"{split}/loss_hard": parts["loss_hard"],
               f"{split}/loss_soft": parts["loss_soft"]}
        return loss, log

    def teacher_forced(self, x_prev, x_t, scale, cond=None):
        """(logits (B, L, K), target) of the network for x_{t-1} given x_t (model-specific)."""
        raise NotImplementedError

    def shared_step(self, batch, batch_idx):
        """Corrupt a batch, predict x_{t-1}; returns (logits, target, posterior, unit temperature)."""
        x = self.get_input(batch, self.first_stage_key)
        _, _, x_prev, x_t, scale, _, posterior = self.get_scales(self.get_h(x))
        self._last_scale = scale[0, 0]  # a tensor: no host sync on the training hot path
        cond = self.get_conditioning(batch) if self.conditioner is not None else None
        logits, target = self.teacher_forced(x_prev, x_t, scale, cond)
        return logits, target, posterior, torch.ones(1, 1, 1, 1, device=x.device)

    def training_step(self, batch, batch_idx):
        logits, target, posterior, _ = self.shared_step(batch, batch_idx)
        loss, log = self.compute_loss(logits, target, posterior, split="train")
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log("train/bits_per_token", bits_per_token(log["train/loss"]), on_step=True, on_epoch=False)
        if self.single_scale is None:
            self.log("train/scale", self._last_scale.float(), on_step=True, on_epoch=False)
        scalors = getattr(self.transformer, "log_scalors", None)
        if scalors is not None:
            for k, value in enumerate(scalors.detach()):
                self.log(f"train/log_scalors_{k}", value, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch, batch_idx):
        self._log_validation(batch, batch_idx, "val")
        if self.use_ema:
            with self.ema_scope():
                self._log_validation(batch, batch_idx, "val_ema")

    def _log_validation(self, batch, batch_idx, split):
        logits, target, posterior, _ = self.shared_step(batch, batch_idx)
        _, log = self.compute_loss(logits, target, posterior, split=split)
        for key, value in log.items():
            self.log(key, value, on_step=False, on_epoch=True, sync_dist=True)
            self.log(f"{key}_bits", bits_per_token(value), on_step=False, on_epoch=True, sync_dist=True)

    # optimiser

    def configure_optimizers(self):
        """AdamW (0.9, 0.95), weight decay 0.01 on Linear weights only; optional warm-up/cosine."""
        decay, no_decay = [], []
        for module in self.transformer.modules():
            for name, param in module.named_parameters(recurse=False):
                if not param.requires_grad:
                    continue
                is_linear_weight = name == "weight" and isinstance(module, torch.nn.Linear)
                (decay if is_linear_weight else no_decay).append(param)
        groups = [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(groups, lr=self.learning_rate, betas=(0.9, 0.95))
        if not self.use_scheduler:
            return optimizer
        schedule = instantiate_from_config(self.scheduler_config)
        # LambdaLR multiplies the (scaled) learning rate by the schedule's output; the released
        # configs pick base_learning_rate so that it is 1.0 at their batch size (0.0625 x 16)
        scheduler = {"scheduler": LambdaLR(optimizer, lr_lambda=schedule.schedule), "interval": "step",
                     "frequency": 1}
        return [optimizer], [scheduler]

    # sampling and decoding

    @torch.no_grad()
    def decode_to_img(self, index, zshape):
        """Tokens (B, L) -> images (B, 3, H, W); zshape = (B, C, h, w) of the latents."""
        bhwc = (zshape[0], zshape[2], zshape[3], zshape[1])
        quant = self.first_stage_model.quantize.get_codebook_entry(index.reshape(-1), shape=bhwc)
        return self.first_stage_model.decode(quant)

    def resolve_top_k(self, top_k):
        """The sampling top-k: the argument, else the config's ``top_k``, capped at K."""
        k = top_k if top_k is not None else self.top_k
        return None if k is None else min(int(k), self.num_codes)

    def sampling_condition(self, c_indices, scale, cond=None):
        """What the network is conditioned on when sampling scale t (model-specific)."""
        raise NotImplementedError

    def run_sampler(self, condition, steps, **kwargs):
        """The token-by-token loop for this network kind."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, x, c, steps, temperature=1.0, sample=False, top_k=None, callback=None, **kwargs):
        """The original's loop: c = the full conditioning (encoder input, or GPT prefix with x
        = the (B, 0) start); ``sample=False`` decodes greedily. Returns (B, steps) tokens."""
        condition = c if hasattr(self.transformer, "encoder") else torch.cat((c, x), dim=1)
        return self.run_sampler(condition, steps, temperature=temperature, top_k=top_k, guide=kwargs.get("guide"),
                                greedy=not sample, use_cache=kwargs.get("use_cache", self.use_past_for_sampling),
                                generator=kwargs.get("generator"), callback=callback)

    @torch.no_grad()
    def sample_single_scale(self, c_indices, scale, temp_x, steps, temperature=None, callback=None,
                            top_k=None, cond=None, guide=None, generator=None, use_cache=True):
        """x_{t-1} ~ p(· | x_t = c_indices) at scale t (B, 1); unlike the original, honours
        ``temperature`` and takes ``top_k=None`` as the config's top_k."""
        if temp_x is not None:
            raise ValueError("temp_x is not supported (the original dropped it too)")
        return self.run_sampler(self.sampling_condition(c_indices, scale, cond), steps,
                                temperature=1.0 if temperature is None else temperature,
                                top_k=self.resolve_top_k(top_k), guide=guide, use_cache=use_cache,
                                generator=generator, callback=callback)

    # image logs

    @torch.no_grad()
    def get_diffusion_row(self, pre_quant_one):
        """x_0 -> x_T of one example (same draws as training), as tokens (T+1, L)."""
        _, _, info = self.first_stage_model.quantize(pre_quant_one)
        x0 = info[2].reshape(1, -1)
        return q_sample_chain(x0, self.schedule, self.num_codes)[:, 0]  # (T+1, L)

    @torch.no_grad()
    def log_images(self, batch, temperature=None, top_k=None, callback=None, N=4, sample=True,
                   log_diffusion=True, sample_full=None, split=None, **kwargs):
        """inputs, reconstructions of x_{t-1} and x_t, a one-scale sample, the diffusion row, and
        (joint models, or ``sample_full=True``) the full denoising row x_T -> x_0."""
        log = {}
        with self.ema_scope():
            x = self.get_input(batch, self.first_stage_key)[:N].to(self.device)
            cond = self.get_conditioning(batch)[:N] if self.conditioner is not None else None
            pre_quant = self.get_h(x)
            zq_x, _, x_prev, x_t, scale, _, _ = self.get_scales(pre_quant, force_random=True)
            zshape = zq_x.shape
            if sample:
                samples = self.sample_single_scale(x_t, scale, None, steps=x_prev.shape[1],
                                                   temperature=temperature, top_k=top_k, cond=cond,
                                                   callback=callback)
                log["samples_t"] = self.decode_to_img(samples, zshape)
            log["inputs"] = x
            log["reconstructions_t"] = self.decode_to_img(x_prev, zshape)
            log["reconstructions_t+1"] = self.decode_to_img(x_t, zshape)
            one = (1, *zshape[1:])
            if log_diffusion:
                row = self.get_diffusion_row(pre_quant[:1])  # (T+1, L)
                images = self.decode_to_img(row, (row.shape[0], *zshape[1:]))
                log["diffusion_row"] = make_grid(images, nrow=images.shape[0])[None]
            if sample_full if sample_full is not None else self.single_scale is None:
                tokens = torch.randint(0, self.num_codes, (1, x_prev.shape[1]), device=self.device)
                images = [self.decode_to_img(tokens, one)]
                for t in range(self.n_scales, 0, -1):
                    t_tokens = torch.full((1, 1), t, dtype=torch.long, device=self.device)
                    tokens = self.sample_single_scale(tokens, t_tokens, None, steps=tokens.shape[1],
                                                      temperature=temperature, top_k=top_k,
                                                      cond=None if cond is None else cond[:1])
                    images.append(self.decode_to_img(tokens, one))
                images = torch.cat(images)
                log["denoise_row"] = make_grid(images, nrow=images.shape[0])[None]
        return log


class DenoisingXTransformer(DenoisingTransformer):
    """Encoder-decoder denoiser (a.k.a. BART): encoder reads ``[t, (cond…), x_t]``, the causal
    decoder reads ``[sos, x_{t-1}[:-1]]`` and predicts x_{t-1}."""

    def __init__(self, *args, regression: bool = False, **kwargs):
        if regression:
            raise ValueError("regression: true (non-autoregressive decoding) is not supported")
        super().__init__(*args, **kwargs)

    output_vocabulary_key, input_vocabulary_key = "dec_num_tokens", "enc_num_tokens"

    @property
    def output_vocabulary(self) -> int:
        return self.transformer.decoder.num_tokens

    def _check_sequence_lengths(self, length: int, n_cond: int) -> None:
        encoder, decoder = self.transformer.encoder, self.transformer.decoder
        if encoder.max_seq_len < 1 + n_cond + length:
            raise ValueError(f"transformer_config.params.enc_max_seq_len={encoder.max_seq_len} cannot hold "
                             f"[t, cond x{n_cond}, x_t] = {1 + n_cond + length} tokens")
        if decoder.max_seq_len < length:
            raise ValueError(f"transformer_config.params.dec_max_seq_len={decoder.max_seq_len} is shorter than "
                             f"L={length} tokens per image")

    def forward(self, x, c, scale, temp=1.0):
        """Teacher-forced logits (B, L, K) for x = x_{t-1} (B, L) given c = [(cond…), x_t]."""
        sos = self.sos_token.to(x).expand(x.shape[0], 1)
        tgt = torch.cat((sos, x), dim=1)[:, :-1]  # (B, L)
        src = torch.cat((scale, c), dim=1)  # (B, 1+C+L)
        logits, _ = self.transformer(src, tgt)
        return logits / temp, x

    def teacher_forced(self, x_prev, x_t, scale, cond=None):
        c = x_t if cond is None else torch.cat((cond.to(x_t), x_t), dim=1)
        return self(x_prev, c, scale)

    def sampling_condition(self, c_indices, scale, cond=None):
        """Encoder input ``[t, (cond…), x_t]`` (B, 1+C+L)."""
        src = c_indices if cond is None else torch.cat((cond.to(c_indices), c_indices), dim=1)
        return torch.cat((scale.to(src), src), dim=1)

    def run_sampler(self, condition, steps, **kwargs):
        return sample_encoder_decoder(self.transformer, condition, steps, sos=int(self.sos_token), **kwargs)


class DecoderOnlyDenoiser(DenoisingTransformer):
    """The last scale T: x_T is pure noise, so a GPT over ``[T, (cond…), x_{T-1}]`` suffices."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.single_scale != self.n_scales:
            raise ValueError(f"DecoderOnlyDenoiser models the last scale only: single_scale must equal "
                             f"n_scales={self.n_scales}, got {self.single_scale}")
        if float(self.alphacum[-1]) != 0.0:
            raise ValueError(f"DecoderOnlyDenoiser ignores x_T, which needs beta_T = 1 (x_T pure noise); "
                             f"redraw_prob={self.redraw_prob!r} gives beta_T={float(self.temperature_range[-1]):.4f}")

    output_vocabulary_key, input_vocabulary_key = "vocab_size", "input_vocab_size (or vocab_size)"

    @property
    def output_vocabulary(self) -> int:
        return self.transformer.vocab_size

    def _check_sequence_lengths(self, length: int, n_cond: int) -> None:
        block_size = self.transformer.block_size
        if block_size < n_cond + length:
            raise ValueError(f"transformer_config.params.block_size={block_size} cannot hold "
                             f"[T, cond x{n_cond}, x_(T-1)[:-1]] = {n_cond + length} tokens")

    def forward(self, z_indices, c_indices, temp=1.0):
        """Logits (B, L, K) for z = x_{T-1} given c = [T, (cond…)]."""
        tokens = torch.cat((c_indices, z_indices), dim=1)[:, :-1]  # (B, C+L-1)
        logits, _ = self.transformer(tokens)
        return logits[:, c_indices.shape[1] - 1:] / temp, z_indices

    def teacher_forced(self, x_prev, x_t, scale, cond=None):
        return self(x_prev, self.sampling_condition(x_t, scale, cond))

    def sampling_condition(self, c_indices, scale, cond=None):
        """GPT prefix ``[T, (cond…)]``: x_T (pure noise) is ignored, as in the original."""
        return scale.to(c_indices) if cond is None else torch.cat((scale.to(cond), cond), dim=1)

    def run_sampler(self, condition, steps, **kwargs):
        return sample_decoder_only(self.transformer, condition, steps, **kwargs)
