"""benchmarks/sampling.py runs every mode on a tiny chain and reports per scale and per image (no timing asserted)."""

import importlib.util
import json
from pathlib import Path

import pytest

from tiny_chain import L, T, write_chain

REPO = Path(__file__).resolve().parents[1]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("sampling_benchmark", REPO / "benchmarks" / "sampling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_mode_on_a_tiny_chain(tmp_path, capsys):
    config = write_chain(tmp_path / "chain")
    out = tmp_path / "rows.json"
    assert load_benchmark().main(["--sizes", str(config), "--batch", "1,2", "--gamma", "3", "--out", str(out),
                                  "--max_tokens", "6"]) == 0
    rows = json.loads(out.read_text())["rows"]
    for batch in (1, 2):
        for mode in ("reference", "cached", "speculative", "int8"):
            mine = [r for r in rows if r["batch"] == batch and r["mode"] == mode]
            assert [r["scale"] for r in mine] == [T, *range(T - 1, 0, -1), "image"]
            assert abs(sum(r["seconds"] for r in mine[:-1]) - mine[-1]["seconds"]) < 1e-9
            assert all(r["timed"] == 6 and r["L"] == L for r in mine)
        speculative = [r for r in rows if r["batch"] == batch and r["mode"] == "speculative" and r["scale"] != "image"]
        assert speculative[0]["passes"] == 6 and speculative[0]["acceptance"] is None  # decoder-only: no draft
        assert all(r["passes"] <= 6 and 0 <= r["acceptance"] <= 1 for r in speculative[1:])
    assert sorted(r["scale"] for r in rows if r["mode"] == "bound") == list(range(1, T + 1))
    table = capsys.readouterr().out
    assert "| speculative" in table and "vs reference" in table


def test_bf16_and_tokens_per_second(tmp_path, capsys):
    config = write_chain(tmp_path / "chain")
    out = tmp_path / "rows.json"
    assert load_benchmark().main(["--sizes", str(config), "--batch", "2", "--modes", "cached", "--precision", "bf16",
                                  "--max_tokens", "4", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "bf16 autocast" in table and "tokens / s" in table
    seconds = next(r["seconds"] for r in json.loads(out.read_text())["rows"] if r["scale"] == "image")
    image = next(line for line in table.splitlines() if "| image | cached" in line)
    assert float(image.split("|")[7]) == round(2 * L * T / seconds)  # two images of L tokens at each of T scales


def test_int8_needs_fp32(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        load_benchmark().main(["--sizes", "demo", "--modes", "int8", "--precision", "bf16"])
    assert "--modes int8 runs in fp32 only" in capsys.readouterr().err


@pytest.mark.slow
def test_compiled_mode_draws_the_speculative_tokens(tmp_path, capsys):
    config = write_chain(tmp_path / "chain")
    out = tmp_path / "rows.json"
    assert load_benchmark().main(["--sizes", str(config), "--batch", "1", "--modes", "speculative,compiled",
                                  "--gamma", "2", "--out", str(out)]) == 0
    rows = [r for r in json.loads(out.read_text())["rows"] if r["mode"] in ("speculative", "compiled")]
    by_mode = {mode: [(r["scale"], r.get("passes")) for r in rows if r["mode"] == mode] for mode in ("speculative", "compiled")}
    assert by_mode["compiled"] == by_mode["speculative"]  # the same draws take the same decoder passes
    steps = [r["step_ms"] for r in json.loads(out.read_text())["rows"] if "step_ms" in r]
    assert len(steps) == T and all(ms["compiled"] > 0 and ms["stacked bound"] > 0 for ms in steps)
    assert "| compiled" in capsys.readouterr().out
