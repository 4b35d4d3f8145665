"""scripts/show_demo_data.py: a grid to look at, or single pictures to edit."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from imagebart.data.demo import DemoScenes

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "show_demo_data.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_export_writes_each_picture_unpadded_at_its_size(tmp_path):
    done = run("--split", "validation", "--export", str(tmp_path / "photos"), "-n", "2", "--start", "3")
    assert done.returncode == 0, done.stderr
    data = DemoScenes(split="validation", size=32, seed=0, length=5)
    for index in (3, 4):
        path = tmp_path / "photos" / f"validation_{index:04d}.png"
        assert f"wrote {path}" in done.stdout
        with Image.open(path) as png:
            pixels = np.asarray(png)
        assert pixels.shape == (32, 32, 3)
        expected = np.round((data[index]["image"] + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
        assert np.array_equal(pixels, expected)


def test_grid_and_bad_arguments(tmp_path):
    done = run("--out", str(tmp_path / "grid.png"), "-n", "4", "--scale", "2")
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "grid.png") as png:
        assert png.size == (2 * (2 * 34 + 2), 2 * (2 * 34 + 2))  # 2x2 pictures of 32 px, padded, upscaled 2x
    (tmp_path / "file").write_text("x")
    done = run("--export", str(tmp_path / "file"), "-n", "1")
    assert done.returncode == 2 and "--export" in done.stderr and "is a file" in done.stderr
    done = run("-n", "0")
    assert done.returncode == 2 and "-n must be >= 1" in done.stderr
