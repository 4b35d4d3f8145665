"""The package's layers import downwards only (docs/architecture.md), and modules stay small."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "imagebart"

# layer -> packages above it that it must never import
FORBIDDEN = {
    "modules": ("imagebart.models", "imagebart.sampling", "imagebart.cli", "imagebart.apps", "imagebart.train",
                "imagebart.loading"),
    "diffusion": ("imagebart.models", "imagebart.modules", "imagebart.sampling", "imagebart.cli", "imagebart.apps",
                  "imagebart.train", "imagebart.loading"),
    "models": ("imagebart.sampling", "imagebart.cli", "imagebart.apps", "imagebart.train"),
    "sampling": ("imagebart.cli", "imagebart.apps", "imagebart.train"),
}


def imagebart_imports(path: Path) -> set:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return {name for name in names if name.startswith("imagebart")}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_downwards_only(layer):
    offenders = {str(path.relative_to(PACKAGE)): sorted(name for name in imagebart_imports(path)
                                                         if name.startswith(FORBIDDEN[layer]))
                 for path in sorted((PACKAGE / layer).rglob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_util_and_loading_sit_below_the_models():
    assert not any(name.startswith("imagebart.modules.conditioners") for name in imagebart_imports(PACKAGE / "util.py"))
    assert not any(name.startswith(("imagebart.models", "imagebart.sampling"))
                   for name in imagebart_imports(PACKAGE / "loading.py"))


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
