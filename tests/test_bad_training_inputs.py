"""main.py answers every bad input with one line: exit 2, no traceback, the key or file to fix.

One table of configs, overrides and options (all refused before anything trains, so nothing is
written) and one of resumes (each against a copy of one tiny trained run, whose ``configs/``
must not grow). The sampling CLIs and apps have their own table in tests/test_bad_inputs.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from imagebart.cli.train import cli, main
from test_training_faults import SCALE1, denoiser_args, only_run


def run_cli(args: list[str], capsys) -> str:
    """main.py's body on ``args``: must exit 2 with one error line; returns that line."""
    with pytest.raises(SystemExit) as exit_info:
        cli(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("main.py: error: "), err
    return lines[0]


# configs, overrides and options: refused at build time


def yaml_file(tmp_path, text: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return str(path)


BUILD_CASES = {
    # case: (extra arguments, or a function of tmp_path giving the whole argv; fragments of the message)
    "single_scale a word": (["model.params.single_scale=one"], ["model.params.single_scale", "'one'"]),
    "single_scale out of range": (["model.params.single_scale=4"], ["single_scale must be an integer in 1..n_scales=3"]),
    "base_learning_rate a word": (["model.base_learning_rate=fast"], ["model.base_learning_rate", "positive number"]),
    "base_learning_rate negative": (["model.base_learning_rate=-1"], ["model.base_learning_rate", "got -1"]),
    "top_k a word": (["model.params.top_k=abc"], ["model.params.top_k", "'abc'"]),
    "unclosed list override": (["model.params=[1,2"], ["'model.params=[1,2'", "key.sub=value"]),
    "params a list": (["model.params=[1,2]"], ["model.params"]),
    "image size 48": (["data.params.train.params.size=48", "data.params.validation.params.size=48"],
                      ["images are 48x48", "ddconfig.resolution=16", "data.params.train.params.size=16"]),
    "n_scales differ": (["model.params.n_scales=4"], ["model.params.transformer_config.params.n_scales=3",
                                                      "model.params.n_scales=4"]),
    "n_scales a word": (["model.params.n_scales=three"], ["model.params.n_scales", "integer"]),
    "use_ema not a boolean": (["model.params.use_ema=maybe"], ["model.params.use_ema", "true/false", "'maybe'"]),
    "alpha out of range": (["model.params.alpha=2"], ["model.params.alpha", "[0, 1]"]),
    "redraw_prob unknown": (["model.params.redraw_prob=fast"], ["redraw_prob 'fast'", "geometric"]),
    "network width a word": (["model.params.transformer_config.params.dim=big"],
                             ["model.params.transformer_config.params.dim", "integer"]),
    "unknown network key": (["model.params.transformer_config.params.foo=1"], ["['foo']"]),
    "unknown model key": (["model.params.embed_dimm=3"], ["DenoisingXTransformer", "embed_dimm"]),
    "unknown target": (["model.target=imagebart.nothing.Here"], ["unknown target 'imagebart.nothing.Here'"]),
    "unknown data target": (["data.params.train.target=nope.Data"], ["data.params.train", "nope.Data"]),
    "unknown top-level key": (["foo.bar=1"], ["unknown top-level config key(s) ['foo']"]),
    "first stage checkpoint missing": (["model.params.first_stage_config.params.ckpt_path=/no/vqgan.ckpt"],
                                       ["/no/vqgan.ckpt", "first_stage_config.params.ckpt_path"]),
    "batch_size a word": (["data.params.batch_size=two"], ["data.params.batch_size", "'two'"]),
    "batch_size zero": (["data.params.batch_size=0"], ["data.params.batch_size", "positive integer"]),
    "num_workers negative": (["data.params.num_workers=-1"], ["data.params.num_workers", ">= 0"]),
    "data size a word": (["data.params.train.params.size=abc"], ["data.params.train", "size", "'abc'"]),
    "--max_steps a word": (["--max_steps", "abc"], ["--max_steps", "'abc'"]),
    "trainer max_epochs a word": (["lightning.trainer.max_epochs=abc"], ["lightning.trainer.max_epochs", "'abc'"]),
    "--gpus garbage": (["--gpus", "a,b"], ["--gpus 'a,b'", "comma list of GPU ids"]),
    "--devices a word": (["--devices", "abc"], ["--devices", "'abc'"]),
    "--accumulate_grad_batches 0": (["--accumulate_grad_batches", "0"], ["accumulate_grad_batches", ">= 1"]),
    "--limit_val_batches -1": (["--limit_val_batches", "-1"], ["lightning.trainer", "limit_val_batches"]),
    "--accelerator unknown": (["--accelerator", "abacus"], ["lightning.trainer", "abacus"]),
    "unknown trainer key": (["lightning.trainer.gpuss=1"], ["lightning.trainer", "gpuss"]),
    "Lightning 1 resume key": (["lightning.trainer.resume_from_checkpoint=x.ckpt"], ["resume_from_checkpoint", "-r"]),
    "checkpoint mode": (["lightning.modelcheckpoint.params.mode=sideways"], ["lightning.modelcheckpoint", "sideways"]),
    "checkpoint interval a word": (["lightning.modelcheckpoint.params.every_n_train_steps=x"],
                                   ["lightning.modelcheckpoint.params.every_n_train_steps", "'x'"]),
    "image logger frequency 0": (["lightning.callbacks.image_logger.params.batch_frequency=0"],
                                 ["lightning.callbacks.image_logger", "batch_frequency"]),
    "unknown option": (["--bogus", "3"], ["--bogus"]),
    "seed a word": (["-s", "abc"], ["-s/--seed", "'abc'"]),
    # (a later --base replaces the tiny arguments' one)
    "--base missing": (lambda tmp: ["--base", str(tmp / "nope.yaml")], ["config file not found", "nope.yaml"]),
    "--base a folder": (lambda tmp: ["--base", str(tmp)], ["config file not found", str(Path("/"))]),
    "--base empty": (lambda tmp: ["--base"], ["no config given", "--base"]),
    "YAML unparsable": (lambda tmp: ["--base", yaml_file(tmp, "model: [1, 2\n")], ["bad.yaml"]),
    "YAML a list": (lambda tmp: ["--base", yaml_file(tmp, "- 1\n- 2\n")], ["bad.yaml", "mapping"]),
    "YAML single_scale: one": (lambda tmp: ["--base", SCALE1, yaml_file(tmp, "model:\n  params:\n    single_scale: one\n")],
                               ["model.params.single_scale", "'one'"]),
}


@pytest.mark.parametrize("case", list(BUILD_CASES))
def test_bad_config_or_option_is_one_line(case, tmp_path, tiny_vqgan_ckpt, capsys):
    extra, fragments = BUILD_CASES[case]
    logdir = tmp_path / "logs"
    extra = extra(tmp_path) if callable(extra) else extra
    line = run_cli(denoiser_args(tiny_vqgan_ckpt, logdir, 2, *extra), capsys)
    for fragment in fragments:
        assert fragment in line, line
    assert not logdir.exists()  # refused before the run directory was made


# resumes: each against a copy of one trained run


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_vqgan_ckpt) -> Path:
    logdir = tmp_path_factory.mktemp("trained") / "logs"
    main(denoiser_args(tiny_vqgan_ckpt, logdir, 2))
    return only_run(logdir)


class Evil:
    """A pickle that would run a shell command when loaded."""

    def __reduce__(self):
        return os.system, ("echo pwned",)


def _checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


def _save(path: Path, checkpoint) -> None:
    torch.save(checkpoint, path)


RESUME_CASES = {
    # case: (edit of the copied run's last.ckpt, extra arguments, message fragments)
    "pickle that runs code": (lambda p, ckpt, vq: _save(p, {"state_dict": {}, "x": Evil()}), [],
                              ["refusing to load checkpoint", "last.ckpt", "system"]),
    "truncated last.ckpt": (lambda p, ckpt, vq: p.write_bytes(p.read_bytes()[:5000]), [],
                            ["last.ckpt", "truncated"]),
    "empty last.ckpt": (lambda p, ckpt, vq: p.write_bytes(b""), [], ["last.ckpt", "empty"]),
    "VQGAN as last.ckpt": (lambda p, ckpt, vq: shutil.copy(vq, p), [],
                           ["last.ckpt", "not a Lightning training checkpoint", "model.params.ckpt_path"]),
    "plain state dict": (lambda p, ckpt, vq: _save(p, ckpt["state_dict"]), [],
                         ["last.ckpt", "not a Lightning training checkpoint"]),
    "weights changed on disk": (
        lambda p, ckpt, vq: _save(p, {**ckpt, "state_dict": {k: v + 1 if v.is_floating_point() else v
                                                             for k, v in ckpt["state_dict"].items()}}),
        [], ["last.ckpt", "corrupt", "sha256"]),
    "schedule edited": (lambda p, ckpt, vq: None, ["model.params.redraw_prob=0.5"],
                        ["last.ckpt", "alphas_cumprod", "--ignore_checkpoint_record"]),
    "architecture edited": (lambda p, ckpt, vq: None, ["model.params.transformer_config.params.dec_depth=2"],
                            ["last.ckpt", "network", "--ignore_checkpoint_record"]),
    "architecture edited, no record": (lambda p, ckpt, vq: _save(p, {**ckpt, "imagebart": None}),
                                       ["model.params.transformer_config.params.dec_depth=2"],
                                       ["last.ckpt", "another architecture", "missing"]),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_bad_resume_is_one_line_and_adds_no_configs(case, trained_run, tmp_path, tiny_vqgan_ckpt, capsys):
    edit, extra, fragments = RESUME_CASES[case]
    run = tmp_path / trained_run.name
    shutil.copytree(trained_run, run)
    edit(run / "checkpoints" / "last.ckpt", _checkpoint(trained_run), tiny_vqgan_ckpt)
    configs = sorted((run / "configs").iterdir())
    line = run_cli(["-r", str(run), "-t", *extra], capsys)
    for fragment in fragments:
        assert fragment in line, line
    assert sorted((run / "configs").iterdir()) == configs


def test_ignore_checkpoint_record_resumes_with_the_edited_config(trained_run, tmp_path):
    run = tmp_path / trained_run.name
    shutil.copytree(trained_run, run)
    trainer = main(["-r", str(run), "-t", "--ignore_checkpoint_record", "--max_steps", "3",
                    "--num_sanity_val_steps", "0", "--limit_val_batches", "0", "model.params.redraw_prob=0.5"])
    assert trainer.global_step == 3


@pytest.mark.parametrize(
    "args, fragments",
    [
        (lambda run, tmp: ["-r", str(tmp / "missing"), "-t"], ["--resume", "missing", "no such run directory"]),
        (lambda run, tmp: ["-r", str(tmp), "-t"], ["has no checkpoints/last.ckpt"]),
        (lambda run, tmp: ["-r", str(run / "configs" / next((run / "configs").iterdir()).name), "-t"],
         ["expected a run directory, or a checkpoint inside"]),
        (lambda run, tmp: ["-r", str(run), "-n", "other", "-t"], ["-n/--name and -r/--resume"]),
    ],
    ids=["missing", "no checkpoint", "file outside checkpoints/", "with -n"],
)
def test_bad_resume_path_is_one_line(args, fragments, trained_run, tmp_path, capsys):
    line = run_cli(args(trained_run, tmp_path), capsys)
    for fragment in fragments:
        assert fragment in line, line


def test_resume_with_no_saved_configs_is_one_line(trained_run, tmp_path, capsys):
    run = tmp_path / trained_run.name
    shutil.copytree(trained_run, run)
    shutil.rmtree(run / "configs")
    (run / "configs").mkdir()
    assert "holds no saved configs" in run_cli(["-r", str(run), "-t"], capsys)
