"""One command-line layer: argparse only under imagebart/cli, no sys.path edits in scripts."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_cli_package_imports_argparse():
    package = REPO / "imagebart"
    offenders = [str(p.relative_to(REPO)) for p in sorted(package.rglob("*.py"))
                 if (package / "cli") not in p.parents and "argparse" in imported_modules(p)]
    assert offenders == []


@pytest.mark.parametrize("folder", ["scripts", "benchmarks"])
def test_scripts_import_the_installed_package(folder):
    offenders = [str(p.relative_to(REPO)) for p in sorted((REPO / folder).rglob("*.py"))
                 if "sys.path" in p.read_text()]
    assert offenders == []


@pytest.mark.parametrize("script, module", [("sample.py", "sample"), ("inpaint.py", "inpaint"),
                                            ("elbo.py", "elbo"), ("convert_checkpoint.py", "convert")])
def test_command_scripts_are_thin(script, module):
    text = (REPO / "scripts" / script).read_text()
    assert f"from imagebart.cli.{module} import main" in text
    assert len(text.splitlines()) < 25


@pytest.mark.parametrize("module", ["inpaint", "caption_table", "guidance_table"])
def test_help_states_the_description_once(module, capsys):
    import importlib

    command = importlib.import_module(f"imagebart.cli.{module}")
    with pytest.raises(SystemExit):
        command.get_parser().parse_args(["--help"])
    first_line = command.__doc__.splitlines()[0]
    assert capsys.readouterr().out.count(first_line[:40]) == 1
