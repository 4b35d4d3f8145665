"""scripts/plot_metrics.py on hand-written metrics files: curves read, errors named."""

import pytest

from imagebart.cli.plot_metrics import main, read_curves, running_mean


def write_csv(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_reads_sparse_columns_and_smooths():
    assert running_mean([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]


def test_sparse_rows_become_curves(tmp_path):
    path = write_csv(tmp_path / "run" / "csv" / "metrics.csv",
                     "epoch,step,train/loss,val/loss\n0,0,5.0,\n0,1,4.0,\n0,1,,4.5\n0,2,nan,\n")
    curves = read_curves(path)
    assert curves["train/loss"] == ([0, 1], [5.0, 4.0])  # the NaN row is skipped
    assert curves["val/loss"] == ([1], [4.5])


def test_a_vqgan_run_plots_its_reconstruction_loss(tmp_path, capsys):
    run = tmp_path / "run"
    write_csv(run / "csv" / "metrics.csv", "epoch,step,train/rec_loss\n0,0,1.0\n0,1,0.5\n")
    assert main([str(run), "--smooth", "1"]) == 0
    assert "train/rec_loss: 0.5000 at step 1" in capsys.readouterr().out
    assert (run / "metrics.png").stat().st_size > 1000


@pytest.mark.parametrize("setup, message", [
    (lambda run: None, "no such run directory"),
    (lambda run: run.mkdir(), "csv/metrics.csv does not exist"),
    (lambda run: write_csv(run / "csv" / "metrics.csv", "a,b\n1,2\n"), "expected a Lightning metrics.csv with a 'step'"),
    (lambda run: write_csv(run / "csv" / "metrics.csv", "step,lr-AdamW\n1,0.1\n"), "no loss columns to plot"),
])
def test_bad_runs_are_named(tmp_path, capsys, setup, message):
    run = tmp_path / "run"
    setup(run)
    with pytest.raises(SystemExit) as exit_info:
        main([str(run)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("scripts/plot_metrics.py: error: ") and message in err and str(run) in err
