"""Shared fixtures: where the reference oracle lives, and shrinking helpers for tiny CPU runs."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference`` next to the clone; tests that need it skip in a user's clone."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"reference oracle not found at {REFERENCE_DIR} (only CI and dev machines have it)")
    return REFERENCE_DIR


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny test models run fastest on one thread (and far steadier on a busy 2-core CI box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# tiny versions of the real configs


TINY_DDCONFIG = {
    "double_z": False, "z_channels": 8, "resolution": 16, "in_channels": 3, "out_ch": 3, "ch": 32,
    "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0,
}  # 16x16 images -> 4x4 = 16 tokens
TINY_N_EMBED = 32
TINY_EMBED_DIM = 8


@pytest.fixture(scope="session")
def tiny_vqgan_ckpt(tmp_path_factory) -> Path:
    """A randomly initialised tiny VQGAN saved as a taming-style checkpoint."""
    from imagebart.models.vqgan import VQGANWrapper

    torch.manual_seed(0)
    model = VQGANWrapper(embed_dim=TINY_EMBED_DIM, n_embed=TINY_N_EMBED, ddconfig=dict(TINY_DDCONFIG))
    path = tmp_path_factory.mktemp("vqgan") / "tiny_vqgan.ckpt"
    torch.save({"state_dict": model.state_dict(), "global_step": 0}, path)
    return path


def tiny_first_stage_overrides(ckpt: Path, prefix: str = "model.params.first_stage_config.params") -> list[str]:
    """Command-line overrides that swap a config's first stage for the tiny VQGAN."""
    dd = TINY_DDCONFIG
    return [
        f"{prefix}.ckpt_path={ckpt}", f"{prefix}.remap=null", f"{prefix}.embed_dim={TINY_EMBED_DIM}",
        f"{prefix}.n_embed={TINY_N_EMBED}",
        *(f"{prefix}.ddconfig.{k}={str(v).replace(' ', '')}" for k, v in dd.items()),
    ]


def tiny_data_overrides(size: int = 16, batch_size: int = 2) -> list[str]:
    """Demo data at the tiny resolution, no loader workers."""
    return [
        f"data.params.batch_size={batch_size}", "data.params.num_workers=0",
        "data.params.train.target=imagebart.data.demo.DemoScenes",
        f"data.params.train.params={{split: train, size: {size}, length: 32}}",
        "data.params.validation.target=imagebart.data.demo.DemoScenes",
        f"data.params.validation.params={{split: validation, size: {size}, length: 8}}",
    ]


TINY_NETWORK = dict(enc_num_tokens=TINY_N_EMBED, dec_num_tokens=TINY_N_EMBED, xt_size=16, enc_max_seq_len=17,
                    dec_max_seq_len=16, dim=32, enc_depth=1, dec_depth=1, enc_heads=2, dec_heads=2,
                    enc_attn_dim_head=16, dec_attn_dim_head=16)


@pytest.fixture(scope="session")
def tiny_scale1_config(tmp_path_factory, tiny_vqgan_ckpt):
    """configs/demo/scale1.yaml with the tiny first stage, tiny demo data and a tiny network."""
    from imagebart.config import merge_configs

    overrides = [*tiny_first_stage_overrides(tiny_vqgan_ckpt), *tiny_data_overrides(),
                 f"model.params.top_k={TINY_N_EMBED}",
                 *(f"model.params.transformer_config.params.{k}={v}" for k, v in TINY_NETWORK.items())]
    path = tmp_path_factory.mktemp("config") / "tiny_scale1.yaml"
    OmegaConf.save(merge_configs([REPO_ROOT / "configs/demo/scale1.yaml"], overrides), path)
    return path
