"""scripts/evaluate.py end to end with the shipped demo features, and its error messages."""

import json

import numpy as np
import pytest
from PIL import Image

from imagebart.cli.evaluate import main
from imagebart.data.demo import DemoScenes

KEYS = {"fid", "kid_mean", "kid_std", "precision", "recall", "n_samples", "n_reference", "features",
        "inception_score"}


def write_pngs(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return folder


def demo_uint8(n, split="validation", start=0):
    data = DemoScenes(split=split, length=start + n)
    return [np.round((data[i]["image"] + 1) * 127.5).clip(0, 255).astype(np.uint8) for i in range(start, start + n)]


def test_end_to_end_json_and_reference_statistics(tmp_path, capsys):
    samples = write_pngs(tmp_path / "samples", demo_uint8(24, "train"))
    out, stats = tmp_path / "metrics.json", tmp_path / "ref.npz"
    assert main(["--samples", str(samples), "--reference", "demo:validation", "--n", "24", "--out", str(out),
                 "--save_reference_stats", str(stats)]) == 0
    metrics = json.loads(out.read_text())
    assert KEYS <= set(metrics) and metrics["n_samples"] == metrics["n_reference"] == 24
    assert metrics["features"] == "demo" and metrics["fid"] > 0 and 1 <= metrics["inception_score"] <= 4
    assert "FID" in capsys.readouterr().out
    again = tmp_path / "again.json"
    assert main(["--samples", str(samples), "--reference", str(stats), "--out", str(again)]) == 0
    assert json.loads(again.read_text())["fid"] == pytest.approx(metrics["fid"], rel=1e-9)


def test_a_set_against_itself_and_the_adm_npz(tmp_path):
    images = np.stack(demo_uint8(20))
    np.savez(tmp_path / "val.npz", arr_0=images)
    out = tmp_path / "same.json"
    assert main(["--samples", str(tmp_path / "val.npz"), "--reference", "demo:validation", "--n", "20",
                 "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["fid"] == pytest.approx(0.0, abs=1e-3)  # PNG-free uint8 round trip of the same pictures
    assert metrics["precision"] == metrics["recall"] == 1.0


def test_sample_output_folders_are_read_from_samples(tmp_path):
    run = tmp_path / "run"
    write_pngs(run / "samples", demo_uint8(8, "train"))
    Image.fromarray(np.zeros((100, 300, 3), np.uint8)).save(run / "grid.png")  # not a sample
    (run / "settings.json").write_text("{}")
    out = tmp_path / "m.json"
    assert main(["--samples", str(run), "--reference", "demo:validation", "--n", "8", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["n_samples"] == 8


def test_class_accuracy_of_labelled_samples(tmp_path):
    """Labels recorded with the samples (ADM arr_1, or a sample folder's tokens.npz) give the class accuracy."""
    data = DemoScenes(split="validation", length=20)
    images = np.stack(demo_uint8(20))
    labels = np.array([data[i]["class_label"] for i in range(20)])
    wrong = (labels + 1) % 4
    for name, given in (("right", labels), ("wrong", wrong)):
        np.savez(tmp_path / f"{name}.npz", arr_0=images, arr_1=given)
        assert main(["--samples", str(tmp_path / f"{name}.npz"), "--reference", "demo:validation", "--n", "20",
                     "--out", str(tmp_path / f"{name}.json")]) == 0
    assert json.loads((tmp_path / "right.json").read_text())["class_accuracy"] >= 0.9
    assert json.loads((tmp_path / "wrong.json").read_text())["class_accuracy"] <= 0.1
    run = tmp_path / "run"
    write_pngs(run / "samples", list(images))
    (run / "settings.json").write_text("{}")
    np.savez(run / "tokens.npz", tokens=np.zeros((20, 4)), class_label=labels)
    assert main(["--samples", str(run), "--reference", "demo:validation", "--out", str(tmp_path / "run.json")]) == 0
    assert json.loads((tmp_path / "run.json").read_text())["class_accuracy"] >= 0.9


@pytest.mark.parametrize("make, extra, message", [
    (lambda p: p, ["--feature_weights", "{tmp}/missing.ckpt"], "missing.ckpt not found; train them with"),
    (lambda p: p, ["--features", "inception", "--inception_weights", "{tmp}/pt.pth"], "Inception weights not found"),
    (lambda p: (p / "empty").mkdir() or p / "empty", [], "holds no images"),
    (lambda p: write_pngs(p / "mixed", demo_uint8(2) + [np.zeros((16, 16, 3), np.uint8)]), ["--batch_size", "2"],
     "images of different sizes"),
    (lambda p: write_pngs(p / "three", demo_uint8(3)), [], "needs more than 3"),
    (lambda p: p, ["--n", "1"], "--n must be >= 2"),
    (lambda p: p / "nothing_here", [], "is not an image set"),
])
def test_errors_name_the_problem(tmp_path, capsys, make, extra, message):
    samples = make(tmp_path)
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    with pytest.raises(SystemExit) as exit_info:
        main(["--samples", str(samples), "--reference", "demo:validation", "--n", "30", *extra]
             if "--n" not in extra else ["--samples", str(samples), "--reference", "demo:validation", *extra])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
