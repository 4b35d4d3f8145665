"""scripts/inpaint.py (imagebart.cli.inpaint) end to end on a tiny chain: the files it writes and its error messages."""

import json

import numpy as np
import pytest
from PIL import Image

from tiny_chain import IMAGE_SIZE, write_chain

from imagebart.cli import inpaint


@pytest.fixture(scope="module")
def sampling_config(tmp_path_factory):
    return write_chain(tmp_path_factory.mktemp("chain"))


@pytest.fixture
def images(tmp_path):
    """A folder with an odd-sized RGBA PNG, a JPEG and a file that is not an image."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (23, 37, 4), dtype=np.uint8), "RGBA").save(folder / "odd.png")
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / "square.jpg")
    (folder / "notes.txt").write_text("skipped: not an image suffix")
    return folder


def read(path):
    return np.asarray(Image.open(path))


def test_folder_with_preset_mask(sampling_config, images, tmp_path):
    outdir = tmp_path / "out"
    assert inpaint.main(["--config", str(sampling_config), "--image", str(images), "--mask", "centre:0.5",
                         "-n", "3", "--batch_size", "2", "--chain_length", "1,2,1", "--top_k", "8",
                         "--temperature", "0.9", "--seed", "1", "--outdir", str(outdir), "--device", "cpu"]) == 0
    assert sorted(p.name for p in outdir.iterdir()) == [".lock", "odd.png", "square.jpg"]
    for name in ("odd.png", "square.jpg"):
        files = sorted(p.name for p in (outdir / name).iterdir())
        assert files == ["grid.png", "masked.png", "original.png", "sample_000.png", "sample_001.png",
                         "sample_002.png", "settings.json"]
        original, masked = read(outdir / name / "original.png"), read(outdir / name / "masked.png")
        assert original.shape == masked.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
        window = slice(IMAGE_SIZE // 4, 3 * IMAGE_SIZE // 4)
        assert (masked[window, window] == 128).all()  # the edited window is greyed
        assert np.array_equal(masked[:IMAGE_SIZE // 4], original[:IMAGE_SIZE // 4])
        assert read(outdir / name / "sample_002.png").shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
        # grid: original | masked | 3 samples in one row, 2 px padding
        assert read(outdir / name / "grid.png").shape == (IMAGE_SIZE + 4, 5 * (IMAGE_SIZE + 2) + 2, 3)
        settings = json.loads((outdir / name / "settings.json").read_text())
        assert settings["chain_length"] == [1, 2, 1] and settings["chain"]["n_scales"] == 3


def test_mask_file_and_reproducible_seed(sampling_config, images, tmp_path):
    mask = np.zeros((50, 50), np.uint8)
    mask[:25] = 255  # keep the upper half
    Image.fromarray(mask).save(tmp_path / "mask.png")
    runs = []
    for k in range(2):
        outdir = tmp_path / f"out{k}"
        inpaint.main(["--config", str(sampling_config), "--image", str(images / "square.jpg"),
                      "--mask", str(tmp_path / "mask.png"), "-n", "2", "--seed", "5", "--outdir", str(outdir),
                      "--device", "cpu"])
        runs.append([read(outdir / "square.jpg" / f"sample_{i:03d}.png") for i in range(2)])
        masked = read(outdir / "square.jpg" / "masked.png")
        assert (masked[IMAGE_SIZE // 2:] == 128).all()
    assert all(np.array_equal(a, b) for a, b in zip(*runs))


@pytest.mark.parametrize("extra, message", [
    (["--mask", "diagonal"], "neither an existing file nor a preset"),
    (["--mask", "NOTES"], "cannot read --mask file"),
    (["--class_label", "3"], "unconditional"),
    (["--chain_length", "1,2"], "chain_length"),
    (["--image", "NOWHERE"], "no such file or folder"),
])
def test_errors_name_the_problem(sampling_config, images, tmp_path, capsys, extra, message):
    argv = ["--config", str(sampling_config), "--image", str(images / "square.jpg"), "--outdir",
            str(tmp_path / "out"), "--device", "cpu", "-n", "1"]
    argv += [str(images / "notes.txt") if a == "NOTES" else str(tmp_path / "nowhere") if a == "NOWHERE" else a
             for a in extra]
    with pytest.raises(SystemExit) as exit_info:
        inpaint.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


# results never overwritten or mixed


def run_args(config, image, outdir, *extra):
    return ["--config", str(config), "--image", str(image), "--outdir", str(outdir), "--device", "cpu",
            "--mask", "centre:0.5", "--chain_length", "1", *extra]


def test_same_stem_gets_two_folders(sampling_config, tmp_path):
    folder = tmp_path / "same_stem"
    folder.mkdir()
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / "photo.png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / "photo.jpg")
    outdir = tmp_path / "out"
    assert inpaint.main(run_args(sampling_config, folder, outdir, "-n", "1")) == 0
    assert sorted(p.name for p in outdir.iterdir() if p.is_dir()) == ["photo.jpg", "photo.png"]
    originals = [read(outdir / name / "original.png") for name in ("photo.jpg", "photo.png")]
    assert not np.array_equal(*originals)


def test_rerun_with_other_settings_is_refused_naming_them(sampling_config, images, tmp_path, capsys):
    outdir = tmp_path / "out"
    assert inpaint.main(run_args(sampling_config, images / "square.jpg", outdir, "-n", "2", "--seed", "1")) == 0
    before = (outdir / "square.jpg" / "sample_000.png").read_bytes()
    for extra, named in ((["-n", "3", "--seed", "1"], "n_samples: was 2, now 3"),
                         (["-n", "2", "--seed", "2"], "seed: was 1, now 2")):
        with pytest.raises(SystemExit) as exit_info:
            inpaint.main(run_args(sampling_config, images / "square.jpg", outdir, *extra))
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and named in err and err.count("\n") == 1
    assert (outdir / "square.jpg" / "sample_000.png").read_bytes() == before
    # deleting settings.json is the deliberate override: the folder is written anew
    (outdir / "square.jpg" / "settings.json").unlink()
    assert inpaint.main(run_args(sampling_config, images / "square.jpg", outdir, "-n", "3", "--seed", "2")) == 0
    assert json.loads((outdir / "square.jpg" / "settings.json").read_text())["seed"] == 2


def test_resume_rewrites_damaged_and_missing_samples_only(sampling_config, images, tmp_path):
    outdir = tmp_path / "out"
    argv = run_args(sampling_config, images / "square.jpg", outdir, "-n", "4", "--batch_size", "2")
    assert inpaint.main(argv) == 0
    folder = outdir / "square.jpg"
    complete = {p.name: p.read_bytes() for p in folder.glob("*.png")}
    damaged, missing, kept = folder / "sample_001.png", folder / "sample_003.png", folder / "sample_000.png"
    damaged.write_bytes(complete["sample_001.png"][:40])  # as a crash mid-write would leave it
    missing.unlink()
    kept_mtime = kept.stat().st_mtime_ns
    assert inpaint.main(argv) == 0
    assert {p.name: p.read_bytes() for p in folder.glob("*.png")} == complete
    assert kept.stat().st_mtime_ns == kept_mtime


def test_original_pixels_are_pasted_back_outside_the_edit(sampling_config, images, tmp_path):
    """Default: the kept border holds the user's pixels; --no_paste_back shows the raw decode there."""
    common = ["--config", str(sampling_config), "--image", str(images / "square.jpg"), "--mask", "centre:0.5",
              "-n", "2", "--seed", "2", "--device", "cpu"]
    assert inpaint.main(common + ["--outdir", str(tmp_path / "pasted")]) == 0
    assert inpaint.main(common + ["--outdir", str(tmp_path / "raw"), "--no_paste_back"]) == 0
    original = read(tmp_path / "pasted" / "square.jpg" / "original.png").astype(int)
    pasted = read(tmp_path / "pasted" / "square.jpg" / "sample_000.png").astype(int)
    raw = read(tmp_path / "raw" / "square.jpg" / "sample_000.png").astype(int)
    border = slice(0, IMAGE_SIZE // 4 - 2)  # kept, away from the feathered seam
    assert np.array_equal(pasted[border], original[border])
    assert not np.array_equal(raw[border], original[border])  # the tiny VQGAN's decode differs
    centre = slice(3 * IMAGE_SIZE // 8, 5 * IMAGE_SIZE // 8)
    assert np.array_equal(pasted[centre, centre], raw[centre, centre])  # the generated region is the chain's
    assert json.loads((tmp_path / "raw" / "square.jpg" / "settings.json").read_text())["paste_back"] is False
