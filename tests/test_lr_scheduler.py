import logging
import math

import pytest
import torch

from imagebart.lr_scheduler import LambdaWarmUpCosineScheduler

# the released configs' numbers (FFHQ)
RELEASED = dict(
    warm_up_steps=10000, lr_min=1.0e-8, lr_max=1.0e-4, lr_start=2.5e-6, max_decay_steps=1500001
)


def small(**overrides):
    kwargs = dict(warm_up_steps=4, lr_min=0.1, lr_max=1.0, lr_start=0.2, max_decay_steps=8)
    kwargs.update(overrides)
    return LambdaWarmUpCosineScheduler(**kwargs)


def test_pinned_values_small():
    sched = small()
    # warm-up: 0.2 + 0.8 * n / 4
    assert sched(0) == pytest.approx(0.2)
    assert sched(1) == pytest.approx(0.4)
    assert sched(3) == pytest.approx(0.8)
    # cosine over steps 4..8: 0.1 + 0.45 * (1 + cos(pi * (n - 4) / 4))
    assert sched(4) == pytest.approx(1.0)
    assert sched(5) == pytest.approx(0.1 + 0.45 * (1 + math.sqrt(0.5)))  # 0.86820
    assert sched(6) == pytest.approx(0.55)
    assert sched(7) == pytest.approx(0.1 + 0.45 * (1 - math.sqrt(0.5)))  # 0.23180
    assert sched(8) == pytest.approx(0.1)
    assert sched(1000) == pytest.approx(0.1)  # clamped after max_decay_steps


def test_pinned_values_released():
    sched = LambdaWarmUpCosineScheduler(**RELEASED)
    assert sched(0) == 2.5e-6
    assert sched(5000) == pytest.approx(2.5e-6 + 0.5 * (1e-4 - 2.5e-6), rel=1e-12)  # 5.125e-5
    assert sched(10000) == pytest.approx(1e-4, rel=1e-12)
    # half way through the decay the cosine term is 1: (lr_max + lr_min) / 2
    assert sched(10000 + 1490001 // 2) == pytest.approx((1e-4 + 1e-8) / 2, rel=1e-5)
    assert sched(1500001) == pytest.approx(1e-8, rel=1e-9)
    assert sched(3_000_000) == pytest.approx(1e-8, rel=1e-9)


def test_monotone_parts():
    sched = small(warm_up_steps=50, max_decay_steps=200)
    values = [sched(n) for n in range(260)]
    warm_up, decay = values[:51], values[50:]
    assert all(a < b for a, b in zip(warm_up, warm_up[1:]))
    assert all(a >= b for a, b in zip(decay, decay[1:]))
    assert max(values) == pytest.approx(1.0) and min(values) == pytest.approx(0.1)


def test_no_warm_up_starts_at_lr_max():
    sched = small(warm_up_steps=0)
    assert sched(0) == pytest.approx(1.0)


def test_last_lr_and_schedule_alias():
    sched = small()
    assert sched.last_lr == 0.0
    assert sched.schedule(6) == sched(6)
    assert sched.last_lr == pytest.approx(0.55)


def test_lambda_lr_uses_the_factor_as_lr():
    sched = small()
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    lambda_lr = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=sched)
    for n in range(10):
        assert opt.param_groups[0]["lr"] == pytest.approx(small()(n))
        opt.step()
        lambda_lr.step()


def test_verbosity_logs(caplog):
    sched = small(verbosity_interval=2)
    with caplog.at_level(logging.INFO, logger="imagebart.lr_scheduler"):
        for n in range(5):
            sched(n)
    assert len(caplog.records) == 3  # steps 0, 2, 4
    caplog.clear()
    quiet = small(verbosity_interval=-1)  # 0 or negative: silent
    with caplog.at_level(logging.INFO, logger="imagebart.lr_scheduler"):
        quiet(0)
    assert not caplog.records


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(warm_up_steps=-1), "warm_up_steps"),
        (dict(max_decay_steps=4), "max_decay_steps"),
        (dict(max_decay_steps=2), "max_decay_steps"),
        (dict(lr_min=-0.1), "lr_min"),
        (dict(lr_start=float("nan")), "lr_start"),
        (dict(lr_min=2.0), "lr_min"),
    ],
)
def test_bad_arguments(overrides, match):
    with pytest.raises(ValueError, match=match):
        small(**overrides)


def test_bad_types():
    with pytest.raises(TypeError, match="warm_up_steps"):
        small(warm_up_steps=2.5)
    with pytest.raises(TypeError, match="lr_max"):
        small(lr_max="1e-4")
    assert small(max_decay_steps=8.0)(8) == pytest.approx(0.1)  # integral floats from YAML are fine


def test_negative_step():
    with pytest.raises(ValueError, match="step"):
        small()(-1)
