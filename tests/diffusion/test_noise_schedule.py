"""The schedule object and the redraw_prob mini-language, pinned to the original's numbers."""

import json

import pytest
import torch

from imagebart.diffusion.curves import load_quality_curve, read_quality_curve
from imagebart.diffusion.schedule import MultinomialSchedule, equalise_curve


def test_every_reference_schedule_matches_the_original(reference_dir):
    entries = json.loads((reference_dir / "schedules.json").read_text())["entries"]
    assert len(entries) >= 50
    for key, ref in entries.items():
        if ref["raised"]:
            with pytest.raises(ValueError):
                MultinomialSchedule.from_redraw_prob(ref["redraw_prob"], ref["n_scales"])
            continue
        schedule = MultinomialSchedule.from_redraw_prob(ref["redraw_prob"], ref["n_scales"])
        assert schedule.betas.dtype == torch.float32, key
        for ours, name in [
            (schedule.betas, "temperature_range"),
            (schedule.alphas, "alphats"),
            (schedule.alphas_cumprod, "alphacum"),
        ]:
            expected = torch.tensor(ref[name], dtype=torch.float64)
            assert torch.allclose(ours.double(), expected, rtol=0, atol=1e-6), (key, name, ours, expected)
        if "equi_alphacum_float64" in ref:  # the float64 curve inversion, before the float32 cast
            name = ref["redraw_prob"].split("_")
            table = load_quality_curve(name[0] if len(name) == 3 else "in")
            ours = equalise_curve(table["alphacum"], table[name[-1]], ref["n_scales"] + 1)
            expected = torch.tensor(ref["equi_alphacum_float64"], dtype=torch.float64)
            assert torch.allclose(ours, expected, rtol=0, atol=1e-12), key


@pytest.mark.parametrize(
    "redraw_prob, n_scales, betas",
    [  # the paper's β for t >= 1 of its released custom schedules
        ("ffhq_bernoulli_PSIM", 2, [0.364, 1.0]),
        ("bernoulli_PSIM", 3, [0.152, 0.231, 1.0]),
        ("bernoulli_PSIM", 5, [0.090, 0.104, 0.139, 0.266, 1.0]),
    ],
)
def test_paper_schedules(redraw_prob, n_scales, betas):
    schedule = MultinomialSchedule.from_redraw_prob(redraw_prob, n_scales)
    assert torch.allclose(schedule.betas[1:], torch.tensor(betas), atol=6e-4)


@pytest.mark.parametrize("n_scales", [1, 2, 4, 9])
def test_geometric_ends_in_pure_noise_with_linear_alphas_cumprod(n_scales):
    schedule = MultinomialSchedule.from_redraw_prob("geometric", n_scales)
    assert schedule.n_scales == n_scales and schedule.ends_in_noise
    assert schedule.betas[0] == 0 and schedule.betas[-1] == 1
    t = torch.arange(n_scales + 1)
    assert torch.allclose(schedule.alphas_cumprod, 1 - t / n_scales, atol=1e-6)


def test_constant_redraw_prob_from_number_or_numeric_string():
    for p in (0.1, "0.1", " 1e-1 "):
        schedule = MultinomialSchedule.from_redraw_prob(p, 3)
        assert torch.equal(schedule.betas, torch.tensor([0.0, 0.1, 0.1, 0.1]))
    assert torch.equal(MultinomialSchedule.from_redraw_prob(1, 2).betas, torch.tensor([0.0, 1.0, 1.0]))
    assert torch.allclose(MultinomialSchedule.from_redraw_prob(0.5, 3).alphas_cumprod, torch.tensor([1, 0.5, 0.25, 0.125]))


def test_alphacum_string():
    schedule = MultinomialSchedule.from_redraw_prob("alphacum:1.0,0.8,0.5,0.0", 3)
    assert torch.allclose(schedule.betas, torch.tensor([0.0, 0.2, 0.375, 1.0]))
    assert torch.allclose(schedule.alphas_cumprod, torch.tensor([1.0, 0.8, 0.5, 0.0]))


def test_constructor_from_betas():
    schedule = MultinomialSchedule([0.0, 0.5, 1.0])
    assert schedule.n_scales == 2
    assert torch.equal(schedule.alphas_cumprod, torch.tensor([1.0, 0.5, 0.0]))
    assert "n_scales=2" in repr(schedule)
    moved = schedule.to("cpu")
    assert torch.equal(moved.alphas_cumprod, torch.tensor([1.0, 0.5, 0.0])) and moved.n_scales == 2
    # one device-resident module: buffers follow .to(), none is saved (configs rebuild them)
    assert {name for name, _ in schedule.named_buffers()} == {"betas", "alphas", "alphas_cumprod"}
    assert schedule.state_dict() == {}
    half = MultinomialSchedule([0.0, 0.5, 1.0]).to(torch.float64)
    assert half.alphas.dtype == torch.float64
    assert not MultinomialSchedule.from_redraw_prob(0.5, 3).ends_in_noise


@pytest.mark.parametrize(
    "redraw_prob, n_scales, error, match",
    [
        ("alphacum:1.0,0.5", 3, ValueError, r"n_scales \+ 1 = 4 values"),
        ("alphacum:1.0,0.8,0.5,0.0", 2, ValueError, r"n_scales \+ 1 = 3 values"),
        ("alphacum:0.9,0.5,0.0", 2, ValueError, "a_0 must be 1.0"),
        ("alphacum:1.0,0.5,0.7", 2, ValueError, "non-increasing"),
        ("alphacum:1.0,0.5,-0.1", 2, ValueError, "within"),
        ("alphacum:1.0,0.0,0.0", 2, ValueError, "only the last value"),
        ("alphacum:1.0,half,0.0", 2, ValueError, "comma-separated numbers"),
        ("geometrc", 3, ValueError, "unknown redraw_prob 'geometrc'"),
        ("a_b_c_d", 3, ValueError, "unknown redraw_prob"),
        ("gaussian_FID", 3, ValueError, "only 'bernoulli'"),
        ("bernoulli_LPIPS", 3, ValueError, "metric 'LPIPS' not in the curve table"),
        ("bernoulli_fid", 3, ValueError, "metric 'fid'"),
        ("lsun_bernoulli_FID", 3, ValueError, "no packaged quality curve for dataset 'lsun'"),
        (0.0, 3, ValueError, r"\(0, 1\]"),
        (1.5, 3, ValueError, r"\(0, 1\]"),
        ("nan", 3, ValueError, "unknown redraw_prob"),
        (None, 3, ValueError, "redraw_prob is required"),
        ([0.1], 3, TypeError, "redraw_prob must be a string or a number"),
        (True, 3, TypeError, "redraw_prob must be"),
        ("geometric", 0, ValueError, "n_scales must be an integer >= 1"),
        ("geometric", 2.0, ValueError, "n_scales must be an integer >= 1"),
    ],
)
def test_bad_redraw_prob_raises_a_clear_error(redraw_prob, n_scales, error, match):
    with pytest.raises(error, match=match):
        MultinomialSchedule.from_redraw_prob(redraw_prob, n_scales)


@pytest.mark.parametrize(
    "betas, match",
    [([0.1, 0.5], r"betas\[0\] must be 0"), ([0.0, 1.5], r"within|lie in \[0, 1\]"), ([0.0], "T >= 1"), ([[0.0, 1.0]], "1-D")],
)
def test_bad_betas_raise(betas, match):
    with pytest.raises(ValueError, match=match):
        MultinomialSchedule(betas)


# custom curves


def test_custom_curve_mapping_and_file(tmp_path):
    curve = {"description": "a straight line", "alphacum": [1.0, 0.5, 0.0], "M": [0.0, 1.0, 2.0]}
    expected = torch.tensor([0.0, 0.5, 1.0])
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(curve))
    for curves in (curve, path, str(path)):
        for name in ("bernoulli_M", "mine_bernoulli_M"):
            schedule = MultinomialSchedule.from_redraw_prob(name, 2, curves=curves)
            assert torch.equal(schedule.betas, expected)


def test_metric_schedule_takes_the_first_crossing_of_a_non_monotone_curve():
    # levels 0, 1, 2, 3: level 1 is crossed at ᾱ = 0.875 (and again later, ignored);
    # level 2 is first reached at ᾱ = 0.625, level 3 at the end
    curve = {"alphacum": [1.0, 0.75, 0.5, 0.25, 0.0], "M": [0.0, 2.0, 0.5, 2.5, 3.0]}
    got = equalise_curve(curve["alphacum"], curve["M"], 4)
    assert torch.allclose(got, torch.tensor([1.0, 0.875, 0.75, 0.0], dtype=torch.float64))
    # the level touched at a vertex: first segment ending there gives that vertex
    got = equalise_curve([1.0, 0.5, 0.0], [0.0, 1.0, 2.0], 3)
    assert got.tolist() == [1.0, 0.5, 0.0]


@pytest.mark.parametrize(
    "curve, match",
    [
        ({"alphacum": [1.0, 0.0]}, "no metric"),
        ({"M": [1.0, 2.0]}, "'alphacum' list"),
        ({"alphacum": [1.0, 0.5, 0.0], "M": [0.0, 1.0]}, "'M' has 2 values but 'alphacum' has 3"),
        ({"alphacum": [1.0, 0.0], "M": ["a", "b"]}, "'M' must be a list of numbers"),
        ({"alphacum": [1.0, 0.0], "M": [0.0, float("nan")]}, "non-finite"),
        ({"alphacum": [1.0], "M": [0.0]}, "at least 2 points"),
    ],
)
def test_bad_curve_tables_raise(curve, match):
    with pytest.raises(ValueError, match=match):
        read_quality_curve(curve)


def test_bad_curve_sources_raise(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        MultinomialSchedule.from_redraw_prob("bernoulli_M", 2, curves=tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_quality_curve(broken)
    with pytest.raises(TypeError, match="curves must be a path"):
        read_quality_curve(3)
    with pytest.raises(ValueError, match="constant"):
        MultinomialSchedule.from_redraw_prob("bernoulli_M", 2, curves={"alphacum": [1.0, 0.0], "M": [1.0, 1.0]})
    with pytest.raises(ValueError, match="reaches ᾱ = 0 before the last step"):
        MultinomialSchedule.from_redraw_prob("bernoulli_M", 2, curves={"alphacum": [1.0, 0.0, 0.0], "M": [0.0, 1.0, 2.0]})
