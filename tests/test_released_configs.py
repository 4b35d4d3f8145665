"""The released configs: same schema and numbers as the original release, internally consistent.

A user coming from the original must be able to train and sample with these files and load the
official checkpoints, so every size that shapes a weight tensor is pinned here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"

DENOISER = "imagebart.models.diffusion.DenoisingXTransformer"
DECODER_ONLY = "imagebart.models.diffusion.DecoderOnlyDenoiser"
ENC_DEC = "imagebart.modules.xtransformers.x_transformer.XTransformer"
RESIDUAL = "imagebart.modules.xtransformers.x_transformer.ResidualScaledXTransformer"
GPT = "imagebart.modules.transformer.mingpt.GPT"
L = 256  # tokens per image: 16x16 latent grid of a f16 VQGAN at 256x256

LSUN = "imagebart.data.lsun.LSUN"

# per dataset: K = length of the remap list, the official VQGAN, the data classes
DATASETS = {
    "ffhq": dict(
        K=548, n_embed=1024, n_classes=0, ckpt="vqgan/vqgan-ffhq.ckpt",
        remap="data/vqgan_indices/ffhq_indices.npy",
        train="taming.data.faceshq.FFHQTrain", validation="taming.data.faceshq.FFHQValidation",
    ),
    "imagenet": dict(
        K=973, n_embed=16384, n_classes=1000, ckpt="vqgan/vqgan-imagenet.ckpt",
        remap="data/vqgan_indices/imagenet_indices.npy",
        train="taming.data.imagenet.ImageNetTrain",
        validation="taming.data.imagenet.ImageNetValidation",
    ),
    "beds": dict(
        K=1017, n_embed=16384, n_classes=0, ckpt="vqgan/vqgan-bedrooms.ckpt",
        remap="data/vqgan_indices/bedroom_indices.npy",
        train=LSUN + "BedroomsTrain", validation=LSUN + "BedroomsValidation",
    ),
    "cats": dict(
        K=1014, n_embed=16384, n_classes=0, ckpt="vqgan/vqgan-cats.ckpt",
        remap="data/vqgan_indices/cat_indices.npy",
        train=LSUN + "CatsTrain", validation=LSUN + "CatsValidation",
    ),
    "churches": dict(
        K=1022, n_embed=16384, n_classes=0, ckpt="vqgan/vqgan-churches.ckpt",
        remap="data/vqgan_indices/church_indices.npy",
        train=LSUN + "ChurchesTrain", validation=LSUN + "ChurchesValidation",
    ),
}

# the released chains, scale 1 first
FFHQ_4 = [f"ffhq/4_scales/ffhq-geometric-scale{t}.yaml" for t in (1, 2, 3, 4)]
FFHQ_2 = [f"ffhq/2_scales/ffhq-custom-scale{t}.yaml" for t in (1, 2)]
CIN_4 = [f"imagenet/4_scales/imagenet_geometric_scale{t}.yaml" for t in (1, 2, 3, 4)]
CIN_5 = [f"imagenet/5_scales/imagenet-custom-scale{t}.yaml" for t in (1, 2, 3, 4, 5)]
LSUN_3 = {
    d: [f"lsun-{d}/lsun-{d}-scale{t}.yaml" for t in (1, 2, 3)] for d in ("beds", "cats", "churches")
}
JOINT = "ffhq/ffhq_4-scales_joint-training.yaml"


def _chain(dataset, paths, redraw, kinds, alphas, max_decay, batch_size, accumulate, dims):
    """Expected facts for every scale of one released chain (single_scale = position + 1)."""
    return {
        path: dict(
            dataset=dataset, n_scales=len(paths), single_scale=t, redraw_prob=redraw, kind=kind,
            alpha=alpha, max_decay_steps=max_decay, batch_size=batch_size,
            accumulate_grad_batches=accumulate, dims=dim,
        )
        for t, (path, kind, alpha, dim) in enumerate(zip(paths, kinds, alphas, dims), start=1)
    }


# dims: (dim, enc_depth, dec_depth, enc_max_seq_len) for encoder-decoders,
#       (n_embd, n_layer, block_size) for the GPT
FFHQ_RES = (752, 18, 6, 257)
BIG_257 = (1152, 32, 6, 257)
BIG_258 = (1152, 32, 6, 258)
GPT_FFHQ_4 = (800, 26, 256)
GPT_BIG = (1216, 36, 256)
GPT_CLASS = (1216, 36, 258)

TRAIN_CONFIGS: dict[str, dict] = {
    **_chain("ffhq", FFHQ_4, "geometric", [RESIDUAL] * 3 + [GPT], [0.0, 0.0, 0.0, 1.0],
             1500001, 16, None, [FFHQ_RES] * 3 + [GPT_FFHQ_4]),
    **_chain("ffhq", FFHQ_2, "ffhq_bernoulli_PSIM", [ENC_DEC, GPT], [0.0, 1.0],
             1500001, 18, None, [BIG_257, GPT_BIG]),
    **_chain("imagenet", CIN_4, "geometric", [RESIDUAL] * 3 + [GPT], [0.0, 1.0, 1.0, 1.0],
             10000000, 16, 2, [BIG_258] * 3 + [GPT_CLASS]),
    **_chain("imagenet", CIN_5, "bernoulli_PSIM", [ENC_DEC] * 4 + [GPT], [0.0] + [1.0] * 4,
             10000000, 16, 2, [BIG_258] * 4 + [GPT_CLASS]),
    **_chain("beds", LSUN_3["beds"], "bernoulli_PSIM", [ENC_DEC, ENC_DEC, GPT], [0.0, 1.0, 1.0],
             5000000, 16, 2, [BIG_257, BIG_257, GPT_BIG]),
    **_chain("cats", LSUN_3["cats"], "bernoulli_PSIM", [ENC_DEC, ENC_DEC, GPT], [0.0, 1.0, 1.0],
             5000000, 16, 2, [BIG_257, BIG_257, GPT_BIG]),
    # the churches encoder has one unused position (258 > 1 + 256); official weights need it
    **_chain("churches", LSUN_3["churches"], "bernoulli_PSIM", [ENC_DEC, ENC_DEC, GPT],
             [0.0, 1.0, 1.0], 1300001, 16, 2, [BIG_258, BIG_258, GPT_BIG]),
    # joint training: one model for all scales, no single_scale
    JOINT: dict(
        dataset="ffhq", n_scales=4, single_scale=None, redraw_prob="geometric", kind=RESIDUAL,
        alpha=1.0, max_decay_steps=1500001, batch_size=16, accumulate_grad_batches=None,
        dims=FFHQ_RES,
    ),
}

# first stages whose ddconfig says tanh_out: true. The release is not consistent about it: the
# ImageNet geometric chain has it for scales 1-3 only, the custom ImageNet chain not at all
TANH_OUT = {*CIN_4[:3], *LSUN_3["beds"], *LSUN_3["cats"], *LSUN_3["churches"]}

# sampling config -> (folder of its checkpoints under models/, its chain)
SAMPLING_CONFIGS = {
    "sampling/ffhq/ffhq_2_scales_custom.yaml": ("ffhq_2_scales_custom", FFHQ_2),
    "sampling/ffhq/ffhq_4_scales_geometric.yaml": ("ffhq_4_scales_geometric", FFHQ_4),
    "sampling/imagenet/imagenet_4_scales_geometric.yaml": ("cin_4_scales_geometric", CIN_4),
    "sampling/imagenet/imagenet_5_scales_custom.yaml": ("cin_5_scales_custom", CIN_5),
    "sampling/lsun/beds_3_scales.yaml": ("bedrooms_3_scales", LSUN_3["beds"]),
    "sampling/lsun/cats_3_scales.yaml": ("cats_3_scales", LSUN_3["cats"]),
    "sampling/lsun/churches_3_scales.yaml": ("churches_3_scales", LSUN_3["churches"]),
}
RELEASE_FOLDERS = ("ffhq", "imagenet", "lsun-beds", "lsun-cats", "lsun-churches",
                   "sampling/ffhq", "sampling/imagenet", "sampling/lsun")

# every target the released configs name; the lead flips TARGETS_READY once all of them exist
TARGETS_READY = True
EXPECTED_TARGETS = sorted({
    DENOISER, DECODER_ONLY, ENC_DEC, RESIDUAL, GPT,
    "imagebart.lr_scheduler.LambdaWarmUpCosineScheduler",
    "imagebart.models.vqgan.VQGANWrapper",
    "imagebart.util.ClassProvider",
    "taming.modules.losses.vqperceptual.DummyLoss",
    "main.DataModuleFromConfig",
    "main.ImageLogger",
    *(d[split] for d in DATASETS.values() for split in ("train", "validation")),
})


# helpers


def load(rel_path: str):
    return OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / rel_path))


def targets_in(node) -> set[str]:
    found = set()
    if isinstance(node, dict):
        if "target" in node:
            found.add(node["target"])
        for value in node.values():
            found |= targets_in(value)
    elif isinstance(node, list):
        for value in node:
            found |= targets_in(value)
    return found


# the file set


def test_every_released_file_is_covered():
    on_disk = {
        str(p.relative_to(CONFIG_DIR))
        for folder in RELEASE_FOLDERS
        for p in (CONFIG_DIR / folder).glob("**/*.yaml")
    }
    assert on_disk == set(TRAIN_CONFIGS) | set(SAMPLING_CONFIGS)


def test_targets_named_by_the_configs():
    named = set()
    for rel_path in TRAIN_CONFIGS:
        named |= targets_in(load(rel_path))
    assert sorted(named) == EXPECTED_TARGETS


# training configs


@pytest.mark.parametrize("rel_path", sorted(TRAIN_CONFIGS))
def test_training_config(rel_path):
    expected = TRAIN_CONFIGS[rel_path]
    ds = DATASETS[expected["dataset"]]
    K, n_cond = ds["K"], int(ds["n_classes"] > 0)
    cfg = load(rel_path)
    assert set(cfg) <= {"model", "data", "lightning"}

    model = cfg["model"]
    decoder_only = expected["kind"] == GPT
    assert model["target"] == (DECODER_ONLY if decoder_only else DENOISER)
    assert model["base_learning_rate"] == 0.0625
    p = model["params"]
    assert p["first_stage_key"] == "image" and p["monitor"] == "val/loss" and p["use_ema"] is True
    assert p["n_scales"] == expected["n_scales"]
    assert p.get("single_scale") == expected["single_scale"]
    if p.get("single_scale") is not None:
        assert 1 <= p["single_scale"] <= p["n_scales"]
    assert p["redraw_prob"] == expected["redraw_prob"]
    assert p["alpha"] == expected["alpha"] and 0.0 <= p["alpha"] <= 1.0
    assert p["top_k"] == K

    if n_cond:
        assert p["conditioner_config"] == {
            "target": "imagebart.util.ClassProvider", "params": {"key": "class_label"}
        }
    else:
        assert "conditioner_config" not in p

    sched = p["scheduler_config"]
    assert sched["target"] == "imagebart.lr_scheduler.LambdaWarmUpCosineScheduler"
    assert sched["params"] == dict(
        verbosity_interval=0, warm_up_steps=10000, max_decay_steps=expected["max_decay_steps"],
        lr_start=2.5e-06, lr_max=1.0e-04, lr_min=1.0e-08,
    )

    tr = p["transformer_config"]
    assert tr["target"] == expected["kind"]
    tp = tr["params"]
    if decoder_only:
        n_embd, n_layer, block_size = expected["dims"]
        assert (tp["n_embd"], tp["n_layer"], tp["n_head"]) == (n_embd, n_layer, 16)
        assert tp["block_size"] == block_size
        assert tp["vocab_size"] == K
        assert tp.get("input_vocab_size", K) == max(K, ds["n_classes"])
        # input: [T, (class), x_{T-1} without its last token]
        assert tp["block_size"] >= 1 + n_cond + L - 1
        assert tp.get("n_unmasked", 0) == (1 + n_cond if n_cond else 0)
    else:
        dim, enc_depth, dec_depth, enc_len = expected["dims"]
        assert (tp["dim"], tp["enc_depth"], tp["dec_depth"]) == (dim, enc_depth, dec_depth)
        assert tp["enc_heads"] == tp["dec_heads"] == 16
        # scale token, class and codes share one embedding table
        assert tp["enc_num_tokens"] == max(K, ds["n_classes"])
        assert tp["dec_num_tokens"] == K
        assert tp["enc_max_seq_len"] == enc_len
        assert tp["enc_max_seq_len"] >= 1 + n_cond + L  # [t, (class), x_t]
        assert tp["dec_max_seq_len"] == L
        assert tp["wrap_decoder"] is False and tp["tie_token_emb"] is False
        if expected["kind"] == RESIDUAL:
            assert tp["n_scales"] == p["n_scales"]
            assert (tp["scale_pos"], tp["xt_start"], tp["xt_size"]) == (0, 1 + n_cond, L)
            assert tp["enc_max_seq_len"] == tp["xt_start"] + tp["xt_size"]

    fs = p["first_stage_config"]
    assert fs["target"] == "imagebart.models.vqgan.VQGANWrapper"
    fp = fs["params"]
    assert fp["ckpt_path"] == ds["ckpt"] and fp["remap"] == ds["remap"]
    assert fp["sane_index_shape"] is True
    assert (fp["embed_dim"], fp["n_embed"]) == (256, ds["n_embed"])
    dd = fp["ddconfig"]
    assert dd["resolution"] == 256 and dd["ch_mult"] == [1, 1, 2, 2, 4]
    assert (dd["resolution"] // 2 ** (len(dd["ch_mult"]) - 1)) ** 2 == L
    assert dd["z_channels"] == fp["embed_dim"]
    assert dd.get("tanh_out", False) == (rel_path in TANH_OUT)
    assert fp["lossconfig"] == {"target": "taming.modules.losses.vqperceptual.DummyLoss"}

    data = cfg["data"]
    assert data["target"] == "main.DataModuleFromConfig"
    dp = data["params"]
    assert dp["batch_size"] == expected["batch_size"] and dp["wrap"] is False
    assert dp["train"]["target"] == ds["train"]
    assert dp["validation"]["target"] == ds["validation"]
    size_params = {"config": {"size": 256}} if expected["dataset"] == "imagenet" else {"size": 256}
    assert dp["train"]["params"] == dp["validation"]["params"] == size_params

    trainer = cfg.get("lightning", {}).get("trainer", {})
    assert trainer.get("accumulate_grad_batches") == expected["accumulate_grad_batches"]


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_remap_list_length_is_K(dataset, reference_dir):
    ds = DATASETS[dataset]
    used = np.load(reference_dir / ds["remap"])
    assert used.shape == (ds["K"],)
    assert np.all(np.diff(used) > 0), "remap list must be sorted and unique"
    assert 0 <= used.min() and used.max() < ds["n_embed"]


def test_decoder_only_scales_see_pure_noise(reference_dir):
    """A GPT last scale ignores x_T, which is only right where beta_T = 1 (alphas_cumprod_T = 0)."""
    entries = json.loads((reference_dir / "schedules.json").read_text())["entries"]
    for rel_path, expected in TRAIN_CONFIGS.items():
        if expected["kind"] != GPT:
            continue
        assert expected["single_scale"] == expected["n_scales"], rel_path
        entry = entries[f"{expected['redraw_prob']}|n_scales={expected['n_scales']}"]
        assert entry["temperature_range"][-1] == 1.0, rel_path
        assert entry["alphacum"][-1] == 0.0, rel_path


# sampling configs


@pytest.mark.parametrize("rel_path", sorted(SAMPLING_CONFIGS))
def test_sampling_config(rel_path):
    folder, chain_paths = SAMPLING_CONFIGS[rel_path]
    n_scales = len(chain_paths)
    cfg = load(rel_path)
    assert set(cfg) == {"checkpoints", "configs"}
    assert cfg["checkpoints"] == [f"models/{folder}/scale{t}.ckpt" for t in range(1, n_scales + 1)]
    assert cfg["configs"] == [f"configs/{path}" for path in chain_paths]

    chain = [load(Path(c).relative_to("configs").as_posix()) for c in cfg["configs"]]
    for scale_cfg in chain:  # tanh_out differs within one released chain (see TANH_OUT)
        first_stage = scale_cfg["model"]["params"]["first_stage_config"]["params"]
        first_stage["ddconfig"].pop("tanh_out", None)
    shared = {"n_scales", "redraw_prob", "first_stage_config", "top_k"}
    for t, scale_cfg in enumerate(chain, start=1):
        p = scale_cfg["model"]["params"]
        assert (REPO_ROOT / cfg["configs"][t - 1]).is_file()
        assert p["single_scale"] == t  # scale 1 first
        assert p["n_scales"] == n_scales
        assert {k: p[k] for k in shared} == {k: chain[0]["model"]["params"][k] for k in shared}
        assert ("conditioner_config" in p) == ("conditioner_config" in chain[0]["model"]["params"])


# targets


@pytest.mark.skipif(
    not TARGETS_READY,
    reason="the model, VQGAN, GPT, data and callback modules are still being written; "
    "set TARGETS_READY = True once they all import",
)
@pytest.mark.parametrize("target", EXPECTED_TARGETS)
def test_target_resolves(target):
    from imagebart.util import get_obj_from_str

    assert callable(get_obj_from_str(target))
