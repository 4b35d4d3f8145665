"""benchmarks/training.py runs each mode on a tiny config and prints its table (no timing asserted)."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_mode_on_a_tiny_config(tiny_scale1_config, capsys):
    spec = importlib.util.spec_from_file_location("training_benchmark", REPO / "benchmarks" / "training.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--config", str(tiny_scale1_config), "--batch", "2", "--steps", "1", "--device", "cpu",
                        "--modes", "images,tokens"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| images") or
            line.startswith("| tokens")]
    assert len(rows) == 2 and all("(CPU)" in row for row in rows)
