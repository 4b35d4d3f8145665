"""Faults while sampling: a killed run resumes to the files an uninterrupted run writes; one writer per outdir.

The kill tests run ``scripts/sample.py`` / ``scripts/inpaint.py`` on the shipped demo chain as a
subprocess and SIGKILL it once its first PNG is on disk. Because every file is written atomically,
a kill cannot leave half a PNG; the torn file an older version or a failing disk leaves is made by
hand (truncated PNG, batch marker gone), and the resumed run must write it again.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tiny_chain import write_chain

from imagebart.cli import inpaint, sample
from imagebart.sampling.outdir_lock import LOCK_NAME, OutdirLock

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "sampling" / "demo.yaml"
START_DEADLINE_S = 300  # a guard against a hung subprocess, not a speed assertion


def files(folder: Path) -> dict:
    """Every PNG below ``folder`` by relative path -> its decoded pixels."""
    return {str(p.relative_to(folder)): np.asarray(Image.open(p)) for p in sorted(folder.rglob("*.png")) if p.is_file()}


def same_pixels(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def kill_after_first_png(argv: list, pattern: str, outdir: Path) -> None:
    """Start a command line, SIGKILL it as soon as ``outdir`` holds a PNG matching ``pattern``."""
    process = subprocess.Popen([sys.executable, *argv], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + START_DEADLINE_S
    try:
        while not list(outdir.glob(pattern)):
            if process.poll() is not None:
                pytest.fail(f"{argv[0]} ended (rc {process.returncode}) before writing {pattern}")
            if time.monotonic() > deadline:
                pytest.fail(f"{argv[0]} wrote no {pattern} within {START_DEADLINE_S} s")
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def tear(png: Path) -> None:
    """Leave ``png`` as a crash mid-write would: its first bytes only."""
    png.write_bytes(png.read_bytes()[:60])


# killed runs resume


def test_killed_sampling_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    options = ["--config", str(DEMO), "-n", "6", "--batch_size", "1", "--seed", "4", "--device", "cpu"]
    killed = tmp_path / "killed"
    kill_after_first_png(["scripts/sample.py", *options, "--outdir", str(killed)], "samples/*.png", killed)
    written = sorted((killed / "samples").glob("*.png"))
    assert written and not (killed / "grid.png").exists()
    # a kill may leave a hidden temporary file (never a half-written file under its real name) ...
    leftovers = [p for p in killed.rglob("*.tmp")]
    assert all(p.name.startswith(".") for p in leftovers)
    tear(written[0])  # and a torn PNG whose batch marker is lost, as a non-atomic writer would leave
    (killed / "batches" / "batch_000000.npz").unlink(missing_ok=True)

    monkeypatch.chdir(REPO)  # the demo config's paths are relative to the repository
    assert sample.main([*options, "--outdir", str(killed)]) == 0
    clean = tmp_path / "clean"
    assert sample.main([*options, "--outdir", str(clean)]) == 0
    assert same_pixels(files(killed), files(clean))
    assert np.array_equal(np.load(killed / "tokens.npz")["tokens"], np.load(clean / "tokens.npz")["tokens"])
    assert not list(killed.rglob("*.tmp"))  # ... which the resumed run removes


def test_killed_inpainting_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    image = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(image)
    options = ["--config", str(DEMO), "--image", str(image), "--mask", "centre:0.5", "-n", "4", "--batch_size", "1",
               "--chain_length", "1", "--seed", "2", "--device", "cpu"]
    killed = tmp_path / "killed"
    kill_after_first_png(["scripts/inpaint.py", *options, "--outdir", str(killed)], "scene.png/sample_*.png", killed)
    first = killed / "scene.png" / "sample_000.png"
    tear(first)

    monkeypatch.chdir(REPO)
    assert inpaint.main([*options, "--outdir", str(killed)]) == 0
    clean = tmp_path / "clean"
    assert inpaint.main([*options, "--outdir", str(clean)]) == 0
    assert same_pixels(files(killed), files(clean))


# damaged files on the tiny chain (fast)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_chain(tmp_path_factory.mktemp("faults_chain"))


def tiny_args(config, outdir, *extra):
    return ["--config", str(config), "--outdir", str(outdir), "--device", "cpu", "-n", "4", "--batch_size", "2",
            *extra]


def test_torn_png_and_marker_are_rewritten(tiny, tmp_path):
    out = tmp_path / "run"
    assert sample.main(tiny_args(tiny, out)) == 0
    before = files(out)
    tear(out / "samples" / "000001.png")
    (out / "batches" / "batch_000001.npz").write_bytes(b"PK\x03\x04 torn")
    assert sample.main(tiny_args(tiny, out)) == 0
    assert same_pixels(files(out), before)


def test_deleting_settings_starts_the_folder_over(tiny, tmp_path):
    out = tmp_path / "run"
    assert sample.main(tiny_args(tiny, out, "--seed", "1")) == 0
    (out / "settings.json").unlink()
    assert sample.main(tiny_args(tiny, out, "--seed", "2")) == 0
    fresh = tmp_path / "fresh"
    assert sample.main(tiny_args(tiny, fresh, "--seed", "2")) == 0
    assert same_pixels(files(out), files(fresh))  # no image of the seed-1 run survives
    assert json.loads((out / "settings.json").read_text())["seed"] == 2


def test_non_finite_settings_are_never_written(tiny, tmp_path):
    from imagebart.images import write_json
    with pytest.raises(ValueError, match=r"temperature\[1\]"):
        write_json({"temperature": [1.0, float("inf")]}, tmp_path / "settings.json")
    assert not list(tmp_path.iterdir())


# one writer per outdir


def test_a_second_writer_is_refused_naming_the_holder(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    inpaint_argv = ["--config", str(tiny), "--image", str(image), "--outdir", str(out), "--device", "cpu"]
    with OutdirLock(out):
        for main, argv in ((sample.main, tiny_args(tiny, out)), (inpaint.main, inpaint_argv)):
            with pytest.raises(SystemExit) as exit_info:
                main(argv)
            err = capsys.readouterr().err.strip().splitlines()[-1]
            assert exit_info.value.code == 2 and "is in use by another run" in err and f"process {os.getpid()}" in err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # the refused runs wrote nothing


def test_lock_left_by_a_dead_process_does_not_block(tiny, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename,
                                             "started": "earlier", "command": "killed run"}))
    assert sample.main(tiny_args(tiny, out)) == 0


def test_lock_held_by_another_process_is_named(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom imagebart.sampling.outdir_lock import OutdirLock\n"
                               f"with OutdirLock({str(out)!r}):\n    print('locked', flush=True)\n    time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SystemExit):
            sample.main(tiny_args(tiny, out))
        assert f"process {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert sample.main(tiny_args(tiny, out)) == 0  # released when its holder died
