"""Acceptance sampling: keep the best fraction per class by a real (tiny) classifier; API, CLI, resume, errors."""

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tiny_chain import IMAGE_SIZE, L, N_CLASSES, write_chain
from tiny_classifier import TinyClassifier

from imagebart.cli import sample as sample_cli
from imagebart.evaluation.classifier import ImageClassifier, load_classifier
from imagebart.sampling.acceptance import (
    acceptance_sample,
    candidate_seed,
    candidates_needed,
    check_rate,
    keep_best,
)
from imagebart.sampling.chain import ImageBARTChain


@pytest.fixture(scope="module")
def class_yaml(tmp_path_factory):
    return write_chain(tmp_path_factory.mktemp("acceptance_chain"), conditional=True)


@pytest.fixture(scope="module")
def chain(class_yaml):
    return ImageBARTChain.from_sampling_config(class_yaml, device="cpu")


@pytest.fixture(scope="module")
def classifier_yaml(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classifier")
    torch.save({"state_dict": TinyClassifier(N_CLASSES).state_dict()}, folder / "tiny.ckpt")
    OmegaConf.save(OmegaConf.create({"target": "tiny_classifier.TinyClassifier", "params": {"n_classes": N_CLASSES},
                                     "ckpt_path": str(folder / "tiny.ckpt"), "input_range": "zero_one"}),
                   folder / "tiny.yaml")
    return folder / "tiny.yaml"


def test_candidate_streams_differ_from_plain_batches():
    from imagebart.sampling.batch import batch_seed

    seeds = {candidate_seed(0, c, j) for c in range(4) for j in range(3)}
    assert len(seeds) == 12 and not seeds & {batch_seed(0, k) for k in range(20)}


def test_keep_best_and_counts():
    scores = torch.tensor([0.2, 0.9, 0.5, 0.9, 0.1, 0.7])
    assert keep_best(scores, 3).tolist() == [1, 3, 5]  # ties keep the earlier candidate first
    assert candidates_needed(10, 0.1) == 100 and candidates_needed(3, 0.5) == 6 and candidates_needed(5, 1.0) == 5
    assert candidates_needed(1, 0.3) == 4
    for bad in (0, -0.5, 1.5, "half", float("nan")):
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            check_rate(bad)


def test_keeps_exactly_the_top_fraction_per_class(chain, classifier_yaml):
    classifier = load_classifier(classifier_yaml)
    result = acceptance_sample(chain, classifier, 6, [2, 5], rate=0.25, batch_size=4, seed=7)
    assert result.class_label.tolist() == [2, 5, 2, 5, 2, 5]
    assert result.images.shape == (6, 3, IMAGE_SIZE, IMAGE_SIZE)
    for label in (2, 5):
        # the 12 candidates of this class, drawn again independently: batches of 4 seeded (seed, label, j)
        tokens = torch.cat([chain.sample(4, class_label=label, generator=chain.make_generator(candidate_seed(7, label, j))).tokens
                            for j in range(3)])
        probs = classifier(chain.decode(tokens)).softmax(-1)[:, label]
        best = torch.sort(probs, descending=True).values[:3]
        mine = result.class_label == label
        assert torch.allclose(result.scores[mine], best, atol=1e-6)
        assert torch.equal(result.tokens[mine], tokens[torch.sort(probs, descending=True).indices[:3]])
    stats = result.stats
    assert stats["candidates"] == 24 and stats["kept"] == 6 and stats["realised_rate"] == 0.25
    assert stats["mean_score_kept"] >= stats["mean_score_all"]
    assert [c["class"] for c in stats["per_class"]] == [2, 5]


def test_rate_one_keeps_every_sample_in_score_order(chain, classifier_yaml):
    classifier = load_classifier(classifier_yaml)
    result = acceptance_sample(chain, classifier, 3, 4, rate=1.0, batch_size=3, seed=1)
    plain = chain.sample(3, class_label=4, generator=chain.make_generator(candidate_seed(1, 4, 0)))
    assert sorted(map(tuple, result.tokens.tolist())) == sorted(map(tuple, plain.tokens.tolist()))


def test_cli_run_records_statistics_and_resumes(class_yaml, classifier_yaml, tmp_path):
    out = tmp_path / "run"
    argv = ["--config", str(class_yaml), "--outdir", str(out), "--device", "cpu", "-n", str(2 * N_CLASSES),
            "--batch_size", "2", "--class_label", "balanced", "--acceptance_rate", "0.5",
            "--classifier", str(classifier_yaml), "--npz"]
    assert sample_cli.main(argv) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["acceptance_rate"] == 0.5 and settings["classifier"] == str(classifier_yaml)
    stats = settings["acceptance"]
    assert stats["candidates"] == 4 * N_CLASSES and stats["kept"] == 2 * N_CLASSES
    assert len(stats["per_class"]) == N_CLASSES and all(c["kept"] == 2 for c in stats["per_class"])
    saved = np.load(out / "tokens.npz")
    assert saved["tokens"].shape == (2 * N_CLASSES, L)
    assert saved["class_label"].tolist() == list(range(N_CLASSES)) * 2
    assert np.load(out / "samples.npz")["arr_0"].shape == (2 * N_CLASSES, IMAGE_SIZE, IMAGE_SIZE, 3)
    # the API draws the same candidates and keeps the same images
    api = acceptance_sample(ImageBARTChain.from_sampling_config(class_yaml, device="cpu"), load_classifier(classifier_yaml),
                            2 * N_CLASSES, list(range(N_CLASSES)), rate=0.5, batch_size=2, seed=0)
    assert np.array_equal(api.tokens.numpy(), saved["tokens"])
    # a killed run: one candidate batch and one image lost; resuming redraws just that batch
    png = out / "samples" / "000003.png"
    kept_png = png.read_bytes()
    png.unlink()
    (out / "candidates" / "class_000004_batch_000001.npz").unlink()
    summary = sample_cli.run(sample_cli.get_parser().parse_args(argv))
    assert summary["resumed"] and summary["batches_sampled"] == 1 and summary["images_written"] == 1
    assert png.read_bytes() == kept_png
    assert np.array_equal(np.load(out / "tokens.npz")["tokens"], saved["tokens"])
    assert json.loads((out / "settings.json").read_text())["acceptance"] == stats
    # other settings in the same folder are refused, the acceptance record is not a setting
    with pytest.raises(SystemExit):
        sample_cli.main([a if a != "0.5" else "0.25" for a in argv])


def test_demo_classifier_scores_the_demo_classes():
    classifier = load_classifier("demo")
    logits = classifier(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 4)


@pytest.mark.parametrize("extra,message", [
    (["--acceptance_rate", "0.5"], "--acceptance_rate and --classifier go together"),
    (["--acceptance_rate", "1.5", "--classifier", "demo"], "--acceptance_rate must be a number in (0, 1]"),
    (["--acceptance_rate", "0.5", "--classifier", "NOWHERE.yaml"], "expected 'demo' or a classifier YAML"),
    (["--acceptance_rate", "0.5", "--classifier", "demo"], "the chain has 10 classes"),
])
def test_cli_errors(class_yaml, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        sample_cli.main(["--config", str(class_yaml), "--outdir", str(tmp_path / "out"), "--device", "cpu",
                         "-n", "2", "--class_label", "1", *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "settings.json").exists()


def test_acceptance_needs_a_conditional_chain(tmp_path, classifier_yaml):
    plain = ImageBARTChain.from_sampling_config(write_chain(tmp_path / "plain"), device="cpu")
    with pytest.raises(ValueError, match="needs a class-conditional chain"):
        acceptance_sample(plain, load_classifier(classifier_yaml), 2, None, rate=0.5)


@pytest.mark.parametrize("change,message", [
    ({"colour": 1}, "unknown keys \\['colour'\\]"),
    ({"params": {"n_classes": 3}}, "do not fit tiny_classifier.TinyClassifier"),
    ({"ckpt_path": None}, "ckpt_path"),
    ({"input_range": "bytes"}, "input_range must be one of"),
])
def test_bad_classifier_configs(classifier_yaml, tmp_path, change, message):
    config = OmegaConf.to_container(OmegaConf.load(classifier_yaml))
    config.update(change)
    if change.get("ckpt_path", 0) is None:
        del config["ckpt_path"]
    path = tmp_path / "bad.yaml"
    OmegaConf.save(OmegaConf.create(config), path)
    with pytest.raises(ValueError, match=message):
        load_classifier(path)


def test_classifier_adapts_the_input():
    seen = {}

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen["x"] = x
            return {"logits": x.mean(dim=(2, 3))}

    wrapped = ImageClassifier(Recorder(), "recorder", image_size=8, input_range="zero_one", mean=[0.5] * 3,
                              std=[0.25] * 3)
    out = wrapped(torch.ones(2, 3, 16, 16))
    assert seen["x"].shape == (2, 3, 8, 8) and torch.allclose(out, torch.full((2, 3), 2.0))
