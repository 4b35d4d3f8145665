"""VQGANWrapper against the original's outputs (tiny reference checkpoints) and its own contract."""

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from imagebart.checkpoint_io import load_state_dict, load_state_dict_checked, strip_prefix
from imagebart.models.vqgan import VQGANWrapper

FOLDERS = ["xtransformer", "residual_scaled_xtransformer", "decoder_only_gpt",
           "class_conditional_xtransformer"]

TINY_DD = dict(double_z=False, z_channels=8, resolution=16, in_channels=3, out_ch=3, ch=32,
               ch_mult=[1, 1], num_res_blocks=1, attn_resolutions=[], dropout=0.0)


def first_stage_params(folder: Path) -> dict:
    cfg = OmegaConf.load(folder / "config.yaml").model.params.first_stage_config
    params = OmegaConf.to_container(cfg.params)
    params["remap"] = str(folder / params["remap"])  # relative to the reference folder
    return params


def reference_model(folder: Path) -> VQGANWrapper:
    model = VQGANWrapper(**first_stage_params(folder))
    sd = strip_prefix(load_state_dict(folder / "model.ckpt"), "first_stage_model.")
    load_state_dict_checked(model, sd, source=str(folder / "model.ckpt"))
    return model.freeze()


def tiny(tmp_path=None, **kw):
    torch.manual_seed(0)
    params = dict(embed_dim=4, n_embed=16, ddconfig=dict(TINY_DD))
    params.update(kw)
    return VQGANWrapper(**params)


@pytest.mark.parametrize("name", FOLDERS)
def test_matches_original(reference_dir, name):
    folder = reference_dir / "checkpoints" / name
    model = reference_model(folder)
    io = torch.load(folder / "io.pt", weights_only=True)
    x = io["encode_image"]
    with torch.no_grad():
        pre_quant = model.encode_to_prequant(x)
        torch.manual_seed(int(io["encode_torch_seed"]))
        quant, emb_loss, info = model.encode(x)
        raw = model.quantize.raw_indices(pre_quant)
        roundtrip = model.decode(quant)
        b, c, h, w = io["decode_zshape"].tolist()
        decoded = model.decode(model.get_codebook_entry(io["decode_tokens"], (b, h, w, c)))
    known = ~io["encode_unknown_mask"]
    torch.testing.assert_close(pre_quant, io["encode_pre_quant"], atol=1e-5, rtol=0)
    torch.testing.assert_close(quant, io["encode_quant"], atol=1e-5, rtol=0)
    torch.testing.assert_close(emb_loss, io["encode_emb_loss"], atol=1e-5, rtol=0)
    assert torch.equal(raw, io["encode_raw_indices"])
    assert info[2].shape == io["encode_indices"].shape  # sane_index_shape: (B, h, w)
    assert torch.equal(info[2][known], io["encode_indices"][known])
    # same RNG calls as the original: even the random indices of unknown codes agree
    assert torch.equal(info[2], io["encode_indices"])
    torch.testing.assert_close(roundtrip, io["vq_roundtrip_img"], atol=1e-5, rtol=0)
    torch.testing.assert_close(decoded, io["decoded_img"], atol=1e-5, rtol=0)
    assert model.quantize.re_embed == io["logits"].shape[-1]


def test_remap_round_trip_and_random_unknowns(reference_dir):
    folder = reference_dir / "checkpoints" / "xtransformer"
    model = reference_model(folder)
    q = model.quantize
    used = torch.from_numpy(np.load(folder / "vqgan_used_indices.npy"))
    assert q.used.dtype == torch.int64 and torch.equal(q.used, used)
    assert "quantize.used" in model.state_dict() and "quantize.raw_to_used" not in model.state_dict()
    remapped = q.remap_to_used(used[None])  # (1, K)
    assert torch.equal(remapped[0], torch.arange(len(used)))
    assert torch.equal(q.unmap_to_all(remapped), used[None])
    # unknown codes: uniformly random in [0, K), different draws for different seeds
    unknown = torch.tensor(sorted(set(range(q.n_e)) - set(used.tolist())))
    draws = torch.stack([q.remap_to_used(unknown.repeat(50)[None]) for _ in range(4)])
    assert draws.min() >= 0 and draws.max() < q.re_embed
    assert len(draws.unique()) > q.re_embed // 2
    torch.manual_seed(1)
    a = q.remap_to_used(unknown[None])
    torch.manual_seed(1)
    assert torch.equal(a, q.remap_to_used(unknown[None]))
    with pytest.raises(ValueError, match="re_embed"):
        q.unmap_to_all(torch.tensor([[q.re_embed]]))


def test_tanh_out_honoured():
    plain = tiny()
    squashed = tiny(ddconfig=dict(TINY_DD, tanh_out=True))
    squashed.load_state_dict(plain.state_dict())
    with torch.no_grad():
        for p in plain.decoder.conv_out.parameters():
            p.mul_(50.0)  # push raw outputs well outside [-1, 1]
        squashed.decoder.load_state_dict(plain.decoder.state_dict())
        quant = torch.randn(2, 4, 8, 8)
        raw = plain.decode(quant)
        assert raw.abs().max() > 1.5
        torch.testing.assert_close(squashed.decode(quant), torch.tanh(raw))


def test_unknown_ddconfig_key_and_double_z():
    with pytest.raises(ValueError, match="unknown keys.*chmult"):
        tiny(ddconfig=dict(TINY_DD, chmult=[1]))
    with pytest.raises(ValueError, match="double_z"):
        tiny(ddconfig=dict(TINY_DD, double_z=True))


def test_ckpt_shape_mismatch_is_one_clear_error(tmp_path):
    ckpt = tmp_path / "vqgan.ckpt"
    torch.save({"state_dict": tiny().state_dict()}, ckpt)
    loaded = tiny(ckpt_path=str(ckpt))  # fits: loads, and loss.* keys would be ignored
    torch.testing.assert_close(loaded.quant_conv.weight, tiny().quant_conv.weight)
    with pytest.raises(ValueError) as err:
        tiny(ckpt_path=str(ckpt), n_embed=32)
    msg = str(err.value)
    assert str(ckpt) in msg
    assert "quantize.embedding.weight: checkpoint (16, 4) vs model (32, 4)" in msg
    assert "embed_dim" in msg and "n_embed" in msg and "ddconfig" in msg


def test_missing_files_are_named(tmp_path):
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(FileNotFoundError, match=r"nope\.ckpt.*first_stage_config\.params\.ckpt_path"):
        tiny(ckpt_path=str(missing))
    with pytest.raises(FileNotFoundError, match=r"used\.npy"):
        tiny(remap=str(tmp_path / "used.npy"))
    bad = tmp_path / "bad.npy"
    np.save(bad, np.array([0, 99]))
    with pytest.raises(ValueError, match="n_embed=16"):
        tiny(remap=str(bad))


def test_loaded_used_buffer_rebuilds_lookup(tmp_path):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, np.array([1, 3, 5]))
    np.save(b, np.array([2, 4, 6]))
    src, dst = tiny(remap=str(b)), tiny(remap=str(a))
    dst.load_state_dict(src.state_dict())
    assert torch.equal(dst.quantize.remap_to_used(torch.tensor([[2, 4, 6]])), torch.tensor([[0, 1, 2]]))


def test_frozen():
    model = tiny().freeze()
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    parent = torch.nn.Sequential(model).train()
    assert parent.training and not model.training and not model.decoder.training
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    xrec, _ = model(x)
    assert not xrec.requires_grad


def test_encode_decode_code_shapes():
    model = tiny(sane_index_shape=True).eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    quant, _, (_, _, idx) = model.encode(x)
    assert quant.shape == (2, 4, 8, 8) and idx.shape == (2, 8, 8)
    torch.testing.assert_close(model.decode_code(idx), model.decode(quant))
    batch = {"image": x.permute(0, 2, 3, 1)}
    assert torch.equal(model.get_input(batch, "image"), x)


def test_ckpt_without_used_takes_the_remap_file(tmp_path):
    used = tmp_path / "used.npy"
    np.save(used, np.array([0, 7, 9]))
    ckpt = tmp_path / "taming.ckpt"
    sd = tiny().state_dict()
    sd["loss.discriminator.main.0.weight"] = torch.zeros(1)  # taming checkpoints carry the loss
    torch.save({"state_dict": sd}, ckpt)
    model = tiny(ckpt_path=str(ckpt), remap=str(used))
    assert torch.equal(model.quantize.used, torch.tensor([0, 7, 9]))
    assert model.quantize.re_embed == 3


def test_official_remap_lists_load(reference_dir):
    from imagebart.models.vqgan import load_used_indices

    for path in sorted((reference_dir / "data" / "vqgan_indices").glob("*.npy")):
        n_embed = 1024 if path.name.startswith("ffhq") else 16384
        used = load_used_indices(path, n_embed)
        assert used.dtype == torch.int64 and len(used) > 500
