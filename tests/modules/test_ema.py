import pytest
import torch
from torch import nn

from imagebart.modules.ema import LitEma, shadow_name


class Tiny(nn.Module):
    """Parameter names with dots at two depths, plus a frozen one the EMA must skip."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.token_emb = nn.Embedding(3, 2)
        self.head = nn.Linear(2, 1)
        self.frozen = nn.Parameter(torch.ones(2), requires_grad=False)


def set_all(model, value):
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def test_state_dict_layout_matches_the_original():
    ema = LitEma(Tiny())
    assert list(ema.state_dict()) == [
        "decay", "num_updates", "encodertoken_embweight", "headweight", "headbias",
    ]
    assert ema.decay.dtype == torch.float32 and ema.decay.item() == pytest.approx(0.9999)
    assert ema.num_updates.dtype == torch.int32 and ema.num_updates.item() == 0
    assert LitEma(Tiny(), use_num_upates=False).num_updates.item() == -1
    assert shadow_name("encoder.token_emb.weight") == "encodertoken_embweight"


def test_update_math_with_warm_up():
    model = Tiny()
    set_all(model, 0.0)
    ema = LitEma(model, decay=0.9)
    set_all(model, 1.0)

    ema(model)  # n = 1: decay = min(0.9, 2/11) = 2/11, shadow = 0 + (1 - 2/11) * (1 - 0) = 9/11
    assert ema.num_updates.item() == 1
    assert torch.allclose(ema.headbias, torch.tensor([9 / 11]))

    ema(model)  # n = 2: decay = 3/12, shadow = 9/11 - (9/12) * (9/11 - 1)
    expected = 9 / 11 - 0.75 * (9 / 11 - 1)
    assert torch.allclose(ema.encodertoken_embweight, torch.full((3, 2), expected))


def test_warm_up_ends_at_decay():
    # (1 + n) / (10 + n) exceeds 0.5 from n = 9 on; afterwards every step uses decay 0.5
    model = Tiny()
    ema = LitEma(model, decay=0.5)
    for _ in range(9):
        ema(model)
    set_all(model, 0.0)
    ema.headbias.fill_(1.0)
    ema(model)
    assert torch.allclose(ema.headbias, torch.tensor([0.5]))


def test_without_warm_up_uses_decay_from_the_start():
    model = Tiny()
    set_all(model, 0.0)
    ema = LitEma(model, decay=0.75, use_num_upates=False)
    set_all(model, 4.0)
    ema(model)
    assert ema.num_updates.item() == -1
    assert torch.allclose(ema.headweight, torch.full((1, 2), 1.0))  # 0 + 0.25 * 4


def test_frozen_parameters_are_not_tracked():
    model = Tiny()
    ema = LitEma(model)
    assert "frozen" not in ema.m_name2s_name
    ema(model)
    assert torch.equal(model.frozen, torch.ones(2))


def test_store_copy_to_restore_round_trip():
    model = Tiny()
    set_all(model, 3.0)
    ema = LitEma(model)
    with torch.no_grad():
        for buf in (ema.encodertoken_embweight, ema.headweight, ema.headbias):
            buf.fill_(-1.0)

    trainable = [p for p in model.parameters() if p.requires_grad]
    ema.store(trainable)
    ema.copy_to(model)
    assert all(torch.equal(p, torch.full_like(p, -1.0)) for p in trainable)
    assert torch.equal(model.frozen, torch.full((2,), 3.0))  # untracked: left alone
    ema.restore(trainable)
    assert all(torch.equal(p, torch.full_like(p, 3.0)) for p in trainable)


def test_restore_needs_the_stored_parameters():
    model = Tiny()
    ema = LitEma(model)
    ema.store(model.parameters())
    with pytest.raises(ValueError, match="store"):
        ema.restore([model.head.bias])


def test_bad_decay():
    with pytest.raises(ValueError, match="decay"):
        LitEma(Tiny(), decay=1.5)


def test_name_collision_is_an_error():
    model = nn.Module()
    model.ab = nn.Module()
    model.ab.c = nn.Parameter(torch.zeros(1))
    model.a = nn.Module()
    model.a.bc = nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="abc"):
        LitEma(model)


def test_shadow_stays_float32_for_a_half_precision_model():
    model = Tiny()
    ema = LitEma(model)
    model.half()
    ema(model)
    assert ema.headweight.dtype == torch.float32


def _module_from_names(shapes: dict[str, torch.Size]) -> nn.Module:
    """An nn.Module whose parameters carry exactly these dotted names and shapes."""
    root = nn.Module()
    for name, shape in shapes.items():
        *path, leaf = name.split(".")
        node = root
        for part in path:
            if not hasattr(node, part):
                node.add_module(part, nn.Module())
            node = getattr(node, part)
        node.register_parameter(leaf, nn.Parameter(torch.zeros(shape)))
    return root


def test_loads_the_original_ema_of_a_checkpoint(reference_dir):
    """The ``transformer_ema.*`` entries an original checkpoint holds load strictly."""
    path = reference_dir / "checkpoints" / "decoder_only_gpt" / "model.ckpt"
    sd = torch.load(path, map_location="cpu")["state_dict"]
    prefix = "transformer_ema."
    ema_sd = {k.removeprefix(prefix): v for k, v in sd.items() if k.startswith(prefix)}
    # a stand-in with the GPT's parameter names: its state-dict entries that have a shadow
    params = {
        k.removeprefix("transformer."): v.shape
        for k, v in sd.items()
        if k.startswith("transformer.") and shadow_name(k.removeprefix("transformer.")) in ema_sd
    }
    assert "blocks.0.attn.mask" not in params  # a buffer, not averaged
    model = _module_from_names(params)

    ema = LitEma(model)
    ema.load_state_dict(ema_sd, strict=True)
    ema.copy_to(model)
    query = getattr(model.blocks, "1").attn.query.weight
    assert torch.equal(query, ema_sd["blocks1attnqueryweight"])
    assert torch.equal(model.tok_emb.weight, ema_sd["tok_embweight"])
    assert ema.num_updates.dtype == ema_sd["num_updates"].dtype
