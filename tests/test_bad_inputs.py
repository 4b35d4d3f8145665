"""Bad input, table-driven: every mistake ends as ONE line naming what to fix (exit 2), or an st.error in the apps.

Each row runs a command line's ``main(argv)`` in-process on a tiny chain (``tiny_chain``) and checks:
exit code 2, stderr is one ``<prog>: error: ...`` line, no traceback, and the message contains the
row's needle (the argument, file or key). Nothing downloads; no row needs a GPU.
Rows that need a fixed input end in a working run, checked in ``test_handled_inputs``.
"""

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from tiny_chain import IMAGE_SIZE, write_chain

from imagebart.apps.controls import build_schedule, class_label_value
from imagebart.apps.uploads import UploadError, check_mask, read_image_upload, read_mask_upload
from imagebart.cli import convert, elbo, inpaint, sample
from imagebart.sampling.chain import ImageBARTChain

PROGS = {"sample": (sample, "scripts/sample.py"), "inpaint": (inpaint, "scripts/inpaint.py"),
         "elbo": (elbo, "scripts/elbo.py"), "convert": (convert, "scripts/convert_checkpoint.py")}


# fixtures: one folder of bad files


class Evil:
    """Pickles a shell command: loading this checkpoint unsafely would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def png_bytes(array, mode=None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(side: int = 100_000) -> bytes:
    """A tiny PNG whose header claims side x side pixels (10 gigapixels): PIL refuses it at open."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grey
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def sixteen_bit_png() -> bytes:
    """A grey ramp stored with 16 bits per pixel (mode I;16): 8-bit readers that clip see white."""
    ramp = np.linspace(0, 65535, IMAGE_SIZE * IMAGE_SIZE).astype(np.uint16).reshape(IMAGE_SIZE, IMAGE_SIZE)
    return png_bytes(ramp)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Paths by name, for the rows' ``{name}`` placeholders."""
    root = tmp_path_factory.mktemp("bad_inputs")
    chain = write_chain(root / "chain")
    cond = write_chain(root / "cond", conditional=True)
    separate = write_chain(root / "separate", first_stage_in_checkpoints=False)
    base = OmegaConf.to_container(OmegaConf.load(chain))
    ckpts, configs = base["checkpoints"], base["configs"]
    w = {"root": root, "chain": chain, "cond": cond, "marker": root / "PWNED"}

    def sampling(name, **changes):
        path = root / f"{name}.yaml"
        OmegaConf.save(OmegaConf.create({**base, **changes}), path)
        w[name] = path

    def write(name, data):
        path = root / name
        path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
        w[name.replace(".", "_")] = path

    good = Path(ckpts[0]).read_bytes()
    write("truncated.ckpt", good[: len(good) // 2])
    write("random.ckpt", np.random.default_rng(0).bytes(4096))
    write("empty.ckpt", b"")
    flipped = bytearray(good)
    middle = len(good) // 2
    flipped[middle:middle + 4096] = bytes(b ^ 0xFF for b in flipped[middle:middle + 4096])  # weights, not the zip index
    write("flipped.ckpt", bytes(flipped))
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": Evil(w["marker"])}, root / "evil.ckpt")
    w["evil_ckpt"] = root / "evil.ckpt"
    for name in ("truncated", "random", "empty", "evil", "flipped"):
        sampling(f"cfg_{name}", checkpoints=[str(w[f"{name}_ckpt"]), *ckpts[1:]])
    sampling("cfg_vqgan_as_scale", checkpoints=[str(separate.parent / "vqgan.ckpt"), *ckpts[1:]])
    sampling("cfg_swapped_ckpts", checkpoints=[ckpts[1], ckpts[0], ckpts[2]])
    sampling("cfg_wrong_order", checkpoints=[ckpts[1], ckpts[0], ckpts[2]], configs=[configs[1], configs[0], configs[2]])
    sampling("cfg_lengths", configs=configs[:2])
    sampling("cfg_two_scales", checkpoints=ckpts[:2], configs=configs[:2])
    sampling("cfg_missing_ckpt", checkpoints=[ckpts[0], str(root / "gone.ckpt"), ckpts[2]])
    write("no_model.yaml", "data: {}\n")
    sampling("cfg_no_model", configs=[str(w["no_model_yaml"]), *configs[1:]])
    write("cfg_no_configs.yaml", f"checkpoints: {ckpts}\n")
    write("cfg_unknown_key.yaml", OmegaConf.to_yaml(OmegaConf.create({**base, "checkpoint": ckpts})))
    write("cfg_not_yaml.yaml", "checkpoints: [a, b\n  - ]]: :\n")

    rng = np.random.default_rng(1)
    write("photo.png", png_bytes(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)))
    write("notes.png", "not a picture")
    write("bomb.png", bomb_png())
    write("grey16.png", sixteen_bit_png())
    write("zero.png", b"")
    write("white.png", png_bytes(np.full((40, 40), 255, np.uint8)))
    (root / "no_images").mkdir()
    (root / "no_images" / "readme.txt").write_text("no pictures here")
    write("a_file", "a file where a folder belongs")
    (root / "a_folder").mkdir()
    w["a_folder"] = root / "a_folder"
    write("data_ok.yaml", "target: imagebart.data.demo.DemoScenes\n"
                          f"params: {{split: validation, size: {IMAGE_SIZE}, length: 4}}\n")
    write("data_small.yaml", "target: imagebart.data.demo.DemoScenes\nparams: {split: validation, size: 8, length: 4}\n")
    write("data_no_target.yaml", "params: {size: 16}\n")
    out = root / "existing.ckpt"
    out.write_bytes(good)
    w["existing_ckpt"] = out
    (root / "hardlink.ckpt").hardlink_to(ckpts[0])
    (root / "symlink.ckpt").symlink_to(ckpts[0])
    w.update(hardlink=root / "hardlink.ckpt", symlink=root / "symlink.ckpt", scale1=Path(ckpts[0]))
    return w


# the table: (command, argv with {placeholders}, needle in the message)

S = ["--config", "{chain}", "--outdir", "{root}/out_sample", "--device", "cpu", "-n", "1"]
I = ["--config", "{chain}", "--image", "{photo_png}", "--outdir", "{root}/out_inpaint", "--device", "cpu", "-n", "1"]
E = ["--config", "{chain}", "--data", "{data_ok_yaml}", "--device", "cpu"]

CASES = [
    # per-scale values
    ("sample", S + ["--top_k", "1,2"], "top_k must be one value or a list of 3 values"),
    ("sample", S + ["--top_k", "abc"], "--top_k: cannot read 'abc'"),
    ("sample", S + ["--top_k", "inf"], "--top_k: cannot read 'inf'"),
    ("sample", S + ["--top_k", "0"], "top_k values must be >= 1"),
    ("sample", S + ["--top_k=-5,1,1"], "top_k values must be >= 1"),
    ("sample", S + ["--top_k", "2.5"], "not a whole number"),
    ("sample", S + ["--temperature", "inf"], "--temperature: cannot read 'inf'"),
    ("sample", S + ["--temperature", "1,nan,1"], "--temperature: cannot read '1,nan,1'"),
    ("sample", S + ["--temperature", "-1"], "temperature values must be numbers > 0"),
    ("sample", S + ["--temperature", "0"], "temperature values must be numbers > 0"),
    ("sample", S + ["--temperature", "1,,1"], "--temperature: empty entry"),
    ("sample", S + ["--temperature", " "], "--temperature: enter one number per scale"),
    ("inpaint", I + ["--temperature", "inf"], "--temperature: cannot read 'inf'"),
    ("inpaint", I + ["--top_k", "x,1,1"], "--top_k: cannot read 'x,1,1'"),
    ("inpaint", I + ["--chain_length", "0"], "chain_length"),
    ("inpaint", I + ["--chain_length", "1,2"], "chain_length"),
    ("inpaint", I + ["--chain_length", "1e400"], "--chain_length"),
    ("sample", S + ["--threads", "0"], "--threads must be >= 1"),
    ("inpaint", I + ["--threads", "-2"], "--threads must be >= 1"),
    ("sample", S + ["--gamma", "-1"], "gamma (drafts verified per decoder pass) must be an int >= 0"),
    ("sample", S + ["--gamma", "2,2"], "gamma must be one value or a list of 3 values"),
    ("sample", S + ["--gamma", "2", "--no_speculative"], "--gamma and --no_speculative contradict"),
    ("inpaint", I + ["--gamma", "1.5"], "--gamma"),
    # class labels
    ("sample", S + ["--class_label", "cat"], "--class_label: expected an int"),
    ("sample", S + ["--class_label", "3"], "unconditional"),
    ("sample", ["--config", "{cond}", "--outdir", "{root}/out_c", "--device", "cpu", "-n", "1"], "--class_label"),
    ("sample", ["--config", "{cond}", "--outdir", "{root}/out_c", "--device", "cpu", "-n", "1", "--class_label", "99"],
     "class_label values must lie in 0..9"),
    ("inpaint", I + ["--class_label", "1.5"], "--class_label"),
    # devices
    ("sample", S + ["--device", "meta"], "--device meta"),
    ("sample", S + ["--device", "banana"], "--device banana"),
    ("sample", S + ["--device", "cuda:7"] if not torch.cuda.is_available() else S + ["--device", "cuda:99"],
     "--device cuda:"),
    ("sample", S + ["--precision", "16"], "--precision 16 needs a CUDA device"),
    ("inpaint", I + ["--device", "meta"], "--device meta"),
    ("elbo", E + ["--device", "xpu"], "--device xpu"),
    # output folders and sizes
    ("sample", S + ["--outdir", "{a_file}"], "is a file"),
    ("sample", S + ["--outdir", "{a_file}/sub"], "is a file"),
    ("sample", S + ["--outdir", "/proc/1/imagebart_out"], "not writable"),
    ("inpaint", I + ["--outdir", "{a_file}"], "is a file"),
    ("sample", S + ["-n", "0"], "-n and --batch_size must be >= 1"),
    ("sample", S + ["--batch_size", "-1"], "--batch_size"),
    ("inpaint", I + ["-n", "0"], "-n must be >= 1"),
    ("inpaint", I + ["--batch_size", "0"], "--batch_size must be >= 1"),
    # images and masks
    ("inpaint", I + ["--image", "{root}/missing.png"], "missing.png: no such file or folder"),
    ("inpaint", I + ["--image", "{notes_png}"], "cannot read image file"),
    ("inpaint", I + ["--image", "{zero_png}"], "zero.png"),
    ("inpaint", I + ["--image", "{bomb_png}"], "bomb.png is too large to decode"),
    ("inpaint", I + ["--image", "{root}/no_images"], "holds no image files"),
    ("inpaint", I + ["--mask", "diagonal"], "--mask diagonal: mask 'diagonal' is neither an existing file nor a preset"),
    ("inpaint", I + ["--mask", "centre:abc"], "--mask centre:abc"),
    ("inpaint", I + ["--mask", "centre:0"], "--mask centre:0"),
    ("inpaint", I + ["--mask", "outpaint:2.5"], "--mask outpaint:2.5"),
    ("inpaint", I + ["--mask", "upper_half:3"], "--mask upper_half:3"),
    ("inpaint", I + ["--mask", "{zero_png}"], "--mask file"),
    ("inpaint", I + ["--mask", "{notes_png}"], "--mask file"),
    ("inpaint", I + ["--mask", "{bomb_png}"], "bomb.png is too large to decode"),
    ("inpaint", I + ["--mask", "keep_all"], "--mask keep_all: keeps every token"),
    ("inpaint", I + ["--mask", "{white_png}"], "nothing to edit"),
    # sampling configs
    ("sample", S + ["--config", "{root}/missing.yaml"], "missing.yaml"),
    ("sample", S + ["--config", "{cfg_not_yaml_yaml}"], "cfg_not_yaml.yaml"),
    ("sample", S + ["--config", "{cfg_no_configs_yaml}"], "lacks the key 'configs'"),
    ("sample", S + ["--config", "{cfg_unknown_key_yaml}"], "unknown keys ['checkpoint']"),
    ("sample", S + ["--config", "{cfg_lengths}"], "lists 3 checkpoints but 2 configs"),
    ("sample", S + ["--config", "{cfg_two_scales}"], "n_scales=3, but the chain has 2 scales"),
    ("sample", S + ["--config", "{cfg_missing_ckpt}"], "checkpoints[1]"),
    ("sample", S + ["--config", "{cfg_no_model}"], "no_model.yaml"),
    ("sample", S + ["--config", "{cfg_wrong_order}"], "single_scale=2 at position 1"),
    ("sample", S + ["--config", "{cfg_swapped_ckpts}"], "scale2.ckpt"),
    ("inpaint", I + ["--config", "{cfg_wrong_order}"], "single_scale=2 at position 1"),
    # checkpoints
    ("sample", S + ["--config", "{cfg_truncated}"], "truncated.ckpt': it is a damaged or truncated"),
    ("sample", S + ["--config", "{cfg_random}"], "random.ckpt': it is not a file written by torch.save"),
    ("sample", S + ["--config", "{cfg_empty}"], "empty.ckpt': the file is empty"),
    ("sample", S + ["--config", "{cfg_evil}"], "refusing to load checkpoint"),
    ("sample", S + ["--config", "{cfg_vqgan_as_scale}"], "vqgan.ckpt"),
    ("sample", S + ["--config", "{cfg_flipped}"], "flipped.ckpt is corrupt"),
    ("inpaint", I + ["--config", "{cfg_truncated}"], "truncated.ckpt"),
    ("inpaint", I + ["--config", "{cfg_evil}"], "evil.ckpt"),
    # elbo
    ("elbo", E + ["--max_batches", "0"], "--max_batches must be >= 1"),
    ("elbo", E + ["--max_batches", "-3"], "--max_batches must be >= 1"),
    ("elbo", E + ["--batch_size", "0"], "--batch_size must be >= 1"),
    ("elbo", E + ["--data", "{root}/nowhere.yaml"], "--data"),
    ("elbo", E + ["--data", "{data_no_target_yaml}"], "has no 'target'"),
    ("elbo", E + ["--data", "{cfg_not_yaml_yaml}"], "cfg_not_yaml.yaml"),
    ("elbo", E + ["--data", "{data_small_yaml}"], "images are 8x8, the chain's VQGAN takes 16x16"),
    ("elbo", ["--config", "{chain}", "--device", "cpu"], "pass --data"),
    ("elbo", E + ["--config", "{root}/missing.yaml"], "missing.yaml"),
    ("elbo", E + ["--json", "{a_folder}"], "--json"),
    ("elbo", E + ["--json", "{a_file}/x.json"], "is a file"),
    ("elbo", E + ["--config", "{cfg_truncated}"], "truncated.ckpt"),
    ("elbo", E + ["--config", "{cfg_wrong_order}"], "single_scale=2 at position 1"),
    # convert
    ("convert", ["{root}/nothing.ckpt", "{root}/x.ckpt"], "nothing.ckpt: no such checkpoint file"),
    ("convert", ["{truncated_ckpt}", "{root}/x.ckpt"], "truncated.ckpt"),
    ("convert", ["{random_ckpt}", "{root}/x.ckpt"], "random.ckpt"),
    ("convert", ["{evil_ckpt}", "{root}/x.ckpt"], "refusing to load checkpoint"),
    ("convert", ["{scale1}", "{existing_ckpt}"], "exists; pass --force"),
    ("convert", ["{scale1}", "{hardlink}", "--force"], "is the input"),
    ("convert", ["{scale1}", "{symlink}", "--force"], "is the input"),
    ("convert", ["{scale1}", "{scale1}", "--force"], "is the input"),
    ("convert", ["{scale1}", "{a_folder}"], "is a folder"),
    ("convert", ["{scale1}", "{a_file}/x.ckpt"], "is a file"),
]


def row_id(case) -> str:
    command, argv, needle = case.values[0] if hasattr(case, "values") else case
    return f"{command}:{' '.join(a for a in argv if a not in S + I + E)[:40]}"


@pytest.mark.parametrize("case", CASES, ids=[row_id(c) for c in CASES])
def test_bad_input_is_one_line(world, capsys, case):
    command, argv, needle = case
    module, prog = PROGS[command]
    argv = [a.format(**world) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        module.main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err
    assert last.startswith(f"{prog}: error: ") and needle in last, last
    assert [line for line in lines if f"{prog}:" in line] == [last]  # one error line (logging above it is fine)
    assert "\n" not in last


def test_no_row_ran_pickled_code(world):
    assert not world["marker"].exists()


def test_the_table_is_big_enough():
    assert len(CASES) + len(APP_CASES) >= 50


# the apps: the controls' and uploads' helpers raise messages for st.error


@pytest.fixture(scope="module")
def chain(world):
    return ImageBARTChain.from_sampling_config(world["chain"], device="cpu")


APP_CASES = [
    ("top-k per scale, wrong count", lambda c: c.top_k_schedule(build_schedule("per scale", 3, True, "top-k", text="5,5")),
     "expected 3 values"),
    ("top-k zero", lambda c: c.top_k_schedule(build_schedule("per scale", 3, True, "top-k", text="0,1,1")), ">= 1"),
    ("top-k linear nan", lambda c: build_schedule("linear", 3, True, "top-k", start="nan", end=1), "not a finite"),
    ("temperature constant inf", lambda c: build_schedule("constant", 3, False, "temperature", constant=float("inf")),
     "temperature: cannot read 'inf'"),
    ("temperature negative", lambda c: c.temperature_schedule(build_schedule("per scale", 3, False, "temperature",
                                                                             text="1,-1,1")), "> 0"),
    ("temperature text", lambda c: build_schedule("per scale", 3, False, "temperature", text="hot,1,1"),
     "'hot' is not a number"),
    ("class label", lambda c: class_label_value("label", 2.5), "class label must be a whole number"),
    ("empty upload", lambda c: read_image_upload(b"", 16, "'a.png'"), "'a.png' is empty"),
    ("not an image", lambda c: read_image_upload(b"text", 16, "'a.png'"), "'a.png' is not an image"),
    ("bomb upload", lambda c: read_image_upload(bomb_png(), 16, "'bomb.png'"), "'bomb.png' is too large"),
    ("mask not an image", lambda c: read_mask_upload(b"text", 16, "'m.png'"), "'m.png' is not an image"),
    ("mask bomb", lambda c: read_mask_upload(bomb_png(), 16, "'m.png'"), "'m.png' is too large"),
]


@pytest.mark.parametrize("name, call, needle", APP_CASES, ids=[c[0] for c in APP_CASES])
def test_app_helpers_refuse_with_a_message(chain, name, call, needle):
    with pytest.raises((ValueError, UploadError)) as info:
        call(chain)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_app_mask_that_keeps_everything_is_a_problem(chain):
    mask = read_mask_upload(png_bytes(np.full((40, 40), 255, np.uint8)), IMAGE_SIZE).value
    assert "nothing to edit" in check_mask(mask, chain.latent_shape).problem


# inputs that are fixed, not refused


def test_handled_inputs(world, tmp_path):
    """16-bit, odd-sized and RGBA pictures are edited; 16-bit ones keep their greys (not white)."""
    grey = read_image_upload(sixteen_bit_png(), IMAGE_SIZE).value  # (1, 3, H, W) in [-1, 1]
    assert -0.2 < float(grey.mean()) < 0.2 and float(grey.min()) < -0.9  # the ramp, not clipped to white
    out = tmp_path / "out"
    assert inpaint.main(["--config", str(world["chain"]), "--image", str(world["grey16_png"]), "--outdir", str(out),
                         "--device", "cpu", "-n", "1", "--chain_length", "1"]) == 0
    original = np.asarray(Image.open(out / "grey16.png" / "original.png"), dtype=np.float64)
    assert 100 < original.mean() < 155 and original.min() < 20  # mid-grey on average, dark at the top


# the apps under AppTest: st.error on the page, the app keeps running

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
REPO = Path(__file__).resolve().parents[1]


def sample_app(monkeypatch, config):
    monkeypatch.setenv("IMAGEBART_SAMPLING_CONFIG", str(config))
    return AppTest.from_file(str(REPO / "scripts" / "sample_imagebart.py"), default_timeout=60).run()


@pytest.mark.parametrize("key, text, needle", [
    ("temperature_text", "1, inf, 1", "temperature: cannot read"),
    ("top_k_text", "5, 5", "expected 3 values"),
    ("top_k_text", "0, 1, 1", ">= 1"),
])
def test_sample_app_controls_show_an_error(world, monkeypatch, key, text, needle):
    at = sample_app(monkeypatch, world["chain"])
    at.text_input(key=key).set_value(text).run()
    assert not at.exception
    assert any(needle in e.value for e in at.error), [e.value for e in at.error]
    assert at.button(key="sample").disabled


@pytest.mark.parametrize("config, needle", [("cfg_truncated", "truncated.ckpt"), ("cfg_evil", "evil.ckpt")])
def test_sample_app_bad_checkpoint_shows_an_error(world, monkeypatch, config, needle):
    at = sample_app(monkeypatch, world[config])
    assert not at.exception
    assert any(needle in e.value for e in at.error), [e.value for e in at.error]
