"""The command-line layer's shared pieces: per-scale values (CLI and apps alike), device, errors."""

import pytest
import torch

from imagebart.apps.controls import build_schedule
from imagebart.cli.common import (
    parse_class_label, parse_scale_values, per_scale_option, resolve_device, run_cli,
)
from imagebart.config import ConfigError
from imagebart.util import default_device

# per-scale values


@pytest.mark.parametrize("text, integer, expected", [
    ("5", True, 5),
    ("5,4, 3", True, [5, 4, 3]),
    ("5.0,1e2", True, [5, 100]),
    ("0.9", False, 0.9),
    ("1,0.5", False, [1.0, 0.5]),
    ("none", True, None),
    ("100,config,none", True, [100, None, None]),
    (None, False, None),
])
def test_per_scale_option(text, integer, expected):
    assert per_scale_option(text, "--x", integer) == expected


@pytest.mark.parametrize("text, integer, message", [
    ("hot", False, "--x: cannot read 'hot': 'hot' is not a number"),
    ("1,x,3", True, "'x' is not a number"),
    ("1,2.5", True, "'2.5' is not a whole number"),
    ("1,inf", False, "'inf' is not a finite number"),
    ("1,,3", True, "empty entry in '1,,3'"),
    ("  ", True, "enter one number per scale"),
])
def test_bad_values_are_named(text, integer, message):
    with pytest.raises(ValueError, match=message):
        per_scale_option(text, "--x", integer)


@pytest.mark.parametrize("text, integer", [("100, 50,10", True), ("1,0.5,2.0", False), ("7.0, 3, 1e1", True)])
def test_cli_and_apps_read_a_schedule_the_same(text, integer):
    assert build_schedule("per scale", 3, integer, "--x", text=text) == per_scale_option(text, "--x", integer)


@pytest.mark.parametrize("text", ["1,x,3", "1,2.5,3", "1,,3"])
def test_cli_and_apps_reject_the_same_text_with_the_same_message(text):
    with pytest.raises(ValueError) as cli_error:
        per_scale_option(text, "top-k", integer=True)
    with pytest.raises(ValueError) as app_error:
        build_schedule("per scale", 3, True, "top-k", text=text)
    assert str(cli_error.value) == str(app_error.value)


def test_none_words_only_on_the_command_line():
    assert parse_scale_values("none", "--x", allow_none=True) == [None]
    with pytest.raises(ValueError, match="'none' is not a number"):
        parse_scale_values("none", "--x")


def test_class_labels():
    assert parse_class_label("3") == 3 and parse_class_label("1,2") == [1, 2]
    assert parse_class_label(" Random ") == "random" and parse_class_label(None) is None
    with pytest.raises(ValueError, match="--class_label"):
        parse_class_label("cat")


# device


def test_default_device():
    assert resolve_device(None) == default_device()
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu7", "tpu", "cuda:99" if torch.cuda.is_available() else "cuda"])
def test_unusable_device_names_the_option(name):
    with pytest.raises(ValueError, match=f"--device {name}"):
        resolve_device(name)


# the error handler


@pytest.mark.parametrize("error", [ValueError("bad value"), TypeError("bad value"),
                                   FileNotFoundError("bad value"), ConfigError("bad value")])
def test_input_errors_end_with_one_line_and_exit_2(capsys, error):
    def body():
        raise error

    with pytest.raises(SystemExit) as exit_info:
        run_cli("prog.py", body)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.err == "prog.py: error: bad value\n"  # one line, no traceback
    assert captured.out == ""


def test_ctrl_c_exits_130_with_a_short_line(capsys):
    def body():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_info:
        run_cli("prog.py", body)
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "prog.py: interrupted\n"


def test_bugs_and_debug_keep_the_traceback():
    def body():
        raise ValueError("shown in full")

    with pytest.raises(ValueError, match="shown in full"):
        run_cli("prog.py", body, debug=True)
    with pytest.raises(RuntimeError):
        run_cli("prog.py", lambda: (_ for _ in ()).throw(RuntimeError("a bug")))
    assert run_cli("prog.py", lambda: 7) == 7


def test_key_errors_lose_their_quotes(capsys):
    def body():
        raise KeyError("missing key model.params")

    with pytest.raises(SystemExit):
        run_cli("main.py", body, extra_errors=(KeyError,), hint=" (hint)")
    assert capsys.readouterr().err == "main.py: error: missing key model.params (hint)\n"
