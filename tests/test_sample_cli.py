"""scripts/sample.py (imagebart.cli.sample) end to end on a tiny chain: files, settings, resume, argument errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tiny_chain import IMAGE_SIZE, K, L, write_chain

from imagebart.cli.sample import main
from imagebart.images import to_uint8
from imagebart.sampling.batch import batch_seed
from imagebart.sampling.chain import ImageBARTChain

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sampling_yaml(tmp_path_factory):
    return write_chain(tmp_path_factory.mktemp("cli_chain"))


def args(config, outdir, *extra):
    return ["--config", str(config), "--outdir", str(outdir), "--device", "cpu", *extra]


def test_writes_images_grid_tokens_and_settings(sampling_yaml, tmp_path):
    out = tmp_path / "run"
    assert main(args(sampling_yaml, out, "-n", "5", "--batch_size", "2", "--seed", "3",
                      "--top_k", "10,20,30", "--temperature", "0.9")) == 0
    pngs = sorted((out / "samples").glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(5)]
    assert Image.open(pngs[0]).size == (IMAGE_SIZE, IMAGE_SIZE)
    assert (out / "grid.png").is_file()
    tokens = np.load(out / "tokens.npz")["tokens"]
    assert tokens.shape == (5, L) and tokens.min() >= 0 and tokens.max() < K
    settings = json.loads((out / "settings.json").read_text())
    assert settings["top_k"] == [10, 20, 30] and settings["temperature"] == [0.9] * 3
    assert settings["seed"] == 3 and settings["n"] == 5 and settings["batch_size"] == 2
    assert settings["checkpoints"][0].endswith("scale1.ckpt") and len(settings["configs"]) == 3
    assert {"torch", "x-transformers", "imagebart"} <= set(settings["versions"])
    # the PNGs are the decoded tokens, and batch 1 is reproducible on its own from (seed, 1)
    chain = ImageBARTChain.from_sampling_config(sampling_yaml, device="cpu")
    assert np.array_equal(np.asarray(Image.open(pngs[4])), to_uint8(chain.decode(torch.from_numpy(tokens[4:5]))[0]))
    again = chain.sample(2, top_k=[10, 20, 30], temperature=0.9, generator=chain.make_generator(batch_seed(3, 1)))
    assert np.array_equal(again.tokens.numpy(), tokens[2:4])


def test_speculative_decoding_options(sampling_yaml, tmp_path):
    """--no_speculative is gamma 0: token by token, the plain cached sampler's draws; both are recorded."""
    runs = {}
    for name, extra in (("default", []), ("off", ["--no_speculative"]), ("zero", ["--gamma", "0"]),
                        ("per_scale", ["--gamma", "3,2,1"])):
        out = tmp_path / name
        assert main(args(sampling_yaml, out, "-n", "3", "--seed", "2", *extra)) == 0
        runs[name] = (np.load(out / "tokens.npz")["tokens"], json.loads((out / "settings.json").read_text()))
    assert runs["default"][1]["gamma"] == [0, 6, 6]  # scale T is decoder-only: token by token
    assert runs["off"][1]["gamma"] == runs["zero"][1]["gamma"] == [0, 0, 0]
    assert runs["per_scale"][1]["gamma"] == [0, 2, 1]
    assert np.array_equal(runs["off"][0], runs["zero"][0])
    chain = ImageBARTChain.from_sampling_config(sampling_yaml, device="cpu")
    plain = chain.sample(3, generator=chain.make_generator(batch_seed(2, 0)), gamma=0)
    assert np.array_equal(runs["off"][0], plain.tokens.numpy())


def test_threads_option_sets_torch_threads(sampling_yaml, tmp_path):
    before = torch.get_num_threads()
    try:
        assert main(args(sampling_yaml, tmp_path / "t", "-n", "1", "--threads", "1")) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_resume_redoes_only_missing_images(sampling_yaml, tmp_path):
    out = tmp_path / "run"
    run = args(sampling_yaml, out, "-n", "4", "--batch_size", "2", "--seed", "1")
    assert main(run) == 0
    pngs = sorted((out / "samples").glob("*.png"))
    lost = pngs[3].read_bytes()
    pngs[3].unlink()
    mtimes = {p.name: p.stat().st_mtime_ns for p in pngs[:3]}
    assert main(run) == 0
    assert pngs[3].read_bytes() == lost  # the same image again
    assert {p.name: p.stat().st_mtime_ns for p in pngs[:3]} == mtimes  # the others untouched
    # other settings in the same folder: refuse to mix two runs
    with pytest.raises(SystemExit) as exc:
        main(args(sampling_yaml, out, "-n", "4", "--batch_size", "2", "--seed", "2"))
    assert exc.value.code == 2


def test_other_settings_are_named(sampling_yaml, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(args(sampling_yaml, out, "-n", "1", "--temperature", "1.0")) == 0
    with pytest.raises(SystemExit):
        main(args(sampling_yaml, out, "-n", "1", "--temperature", "0.5"))
    assert "temperature: was [1.0, 1.0, 1.0], now [0.5, 0.5, 0.5]" in capsys.readouterr().err


def test_a_run_grows_with_a_larger_n_and_keeps_its_images(sampling_yaml, tmp_path, capsys, caplog):
    out = tmp_path / "run"
    assert main(args(sampling_yaml, out, "-n", "3", "--batch_size", "2")) == 0
    first = {p.name: p.read_bytes() for p in (out / "samples").glob("*.png")}
    assert main(args(sampling_yaml, out, "-n", "6", "--batch_size", "2")) == 0
    assert sorted(p.name for p in (out / "samples").glob("*.png")) == [f"{i:06d}.png" for i in range(6)]
    # batch 0 is kept as it was; image 2 was alone in a partial batch and is drawn again in a full one
    assert all((out / "samples" / name).read_bytes() == data for name, data in first.items() if name < "000002")
    assert "growing the run from 3 to 6 images; images 2..2 of its last, partial batch" in caplog.text
    settings = json.loads((out / "settings.json").read_text())
    assert settings["n"] == 6 and np.load(out / "tokens.npz")["tokens"].shape == (6, L)
    fresh = tmp_path / "fresh"  # the grown run holds exactly what a run of 6 draws
    assert main(args(sampling_yaml, fresh, "-n", "6", "--batch_size", "2")) == 0
    assert np.array_equal(np.load(out / "tokens.npz")["tokens"], np.load(fresh / "tokens.npz")["tokens"])
    with pytest.raises(SystemExit):  # shrinking would orphan images: refused
        main(args(sampling_yaml, out, "-n", "4", "--batch_size", "2"))
    assert "n: was 6, now 4" in capsys.readouterr().err


def test_other_settings_are_refused_before_the_chain_loads(sampling_yaml, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(args(sampling_yaml, out, "-n", "1", "--seed", "1")) == 0

    def not_now(*a, **k):
        raise AssertionError("the chain was loaded before the settings were checked")

    monkeypatch.setattr(ImageBARTChain, "from_sampling_config", not_now)
    with pytest.raises(SystemExit) as exc:
        main(args(sampling_yaml, out, "-n", "1", "--seed", "2"))
    assert exc.value.code == 2 and "seed: was 1, now 2" in capsys.readouterr().err


def test_save_chain_rows_and_grid_scale(sampling_yaml, tmp_path):
    out = tmp_path / "run"
    assert main(args(sampling_yaml, out, "-n", "3", "--batch_size", "2", "--save_chain", "--grid_scale", "2")) == 0
    rows = sorted((out / "chains").glob("*.png"))
    assert [p.name for p in rows] == [f"{i:06d}.png" for i in range(3)]
    tile = 2 * IMAGE_SIZE + 2
    with Image.open(rows[2]) as row, Image.open(out / "samples" / "000002.png") as sample:
        assert row.size == (4 * tile + 2, tile + 2)  # x_3, x_2, x_1, x_0, each upscaled 2x
        last = np.asarray(row)[2:2 + 2 * IMAGE_SIZE:2, 3 * tile + 2:3 * tile + 2 + 2 * IMAGE_SIZE:2]
        assert np.array_equal(last, np.asarray(sample))  # the row ends with the sample itself
    with Image.open(out / "grid.png") as grid:
        assert grid.size == (3 * tile + 2, tile + 2)
    # asked for later, the rows of a finished run are drawn from the same seeds: same x_0
    (out / "chains" / "000001.png").unlink()
    assert main(args(sampling_yaml, out, "-n", "3", "--batch_size", "2", "--save_chain")) == 0
    with Image.open(out / "chains" / "000001.png") as row, Image.open(out / "samples" / "000001.png") as sample:
        x0 = np.asarray(row)[2:2 + 6 * IMAGE_SIZE:6, 2 + 3 * (6 * IMAGE_SIZE + 2):2 + 3 * (6 * IMAGE_SIZE + 2)
                              + 6 * IMAGE_SIZE:6]  # default scale: 16 px -> 96 px
        assert np.array_equal(x0, np.asarray(sample))


@pytest.mark.parametrize("extra,message", [
    (["--top_k", "1,2"], "top_k must be one value or a list of 3 values"),
    (["--top_k", "-5"], "top_k values must be >= 1"),
    (["--temperature", "hot"], "--temperature: cannot read 'hot'"),
    (["--precision", "16"], "--precision 16 needs a CUDA device"),
    (["--class_label", "3"], "the chain is unconditional"),
    (["-n", "0"], "-n and --batch_size must be >= 1"),
    (["--grid_scale", "0"], "--grid_scale must be >= 1"),
])
def test_bad_arguments_give_a_clear_message(sampling_yaml, tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        main(args(sampling_yaml, out, *extra))
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # nothing written


def test_missing_sampling_config(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(args(tmp_path / "missing.yaml", tmp_path / "run"))
    assert "config file not found" in capsys.readouterr().err


def test_class_labels_and_bf16(tmp_path):
    config = write_chain(tmp_path / "chain", conditional=True)
    out = tmp_path / "run"
    assert main(args(config, out, "-n", "3", "--class_label", "1,2", "--precision", "bf16")) == 0
    assert np.load(out / "tokens.npz")["class_label"].tolist() == [1, 2, 1]
    assert json.loads((out / "settings.json").read_text())["precision"] == "bf16"


def test_script_help_runs():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "sample.py"), "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--class_label" in result.stdout


def test_npz_for_the_adm_suite_holds_the_pngs(sampling_yaml, tmp_path):
    out = tmp_path / "npz"
    assert main(args(sampling_yaml, out, "-n", "3", "--batch_size", "2", "--npz")) == 0
    arrays = np.load(out / "samples.npz")
    assert sorted(arrays.files) == ["arr_0"]  # unconditional: no labels
    images = arrays["arr_0"]
    assert images.dtype == np.uint8 and images.shape == (3, IMAGE_SIZE, IMAGE_SIZE, 3)
    for i in range(3):
        assert np.array_equal(images[i], np.asarray(Image.open(out / "samples" / f"{i:06d}.png").convert("RGB")))


@pytest.fixture(scope="module")
def class_yaml(tmp_path_factory):
    return write_chain(tmp_path_factory.mktemp("cli_class_chain"), conditional=True)


def test_balanced_classes_and_their_labels_in_the_npz(class_yaml, tmp_path):
    from tiny_chain import N_CLASSES

    out = tmp_path / "balanced"
    n = 2 * N_CLASSES
    assert main(args(class_yaml, out, "-n", str(n), "--batch_size", "3", "--class_label", "balanced", "--npz")) == 0
    labels = np.load(out / "tokens.npz")["class_label"]
    assert labels.tolist() == [i % N_CLASSES for i in range(n)]  # every class exactly twice
    assert np.array_equal(np.load(out / "samples.npz")["arr_1"], labels)
    assert json.loads((out / "settings.json").read_text())["class_label"] == "balanced"
    # resumable like any run: the same command again samples nothing
    assert main(args(class_yaml, out, "-n", str(n), "--batch_size", "3", "--class_label", "balanced")) == 0


@pytest.mark.parametrize("config, n, message", [("class", 7, "not a multiple of the 10 classes"),
                                                ("plain", 4, "needs a class-conditional chain")])
def test_balanced_needs_a_conditional_chain_and_whole_rounds(class_yaml, sampling_yaml, tmp_path, capsys, config,
                                                             n, message):
    yaml = class_yaml if config == "class" else sampling_yaml
    with pytest.raises(SystemExit) as exit_info:
        main(args(yaml, tmp_path / "bad", "-n", str(n), "--class_label", "balanced"))
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
