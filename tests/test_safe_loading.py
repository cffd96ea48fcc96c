"""Safe loading stays safe: the package never unpickles, never runs YAML tags, never loads a
checkpoint with more than `weights_only=True`. A scan of the source catches a regression."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(REPO / "bench").rglob("*.py"), *(REPO / "methods").rglob("*.py")])

FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
FORBIDDEN_CALLS = {
    "yaml.load": "yaml.safe_load", "yaml.unsafe_load": "yaml.safe_load", "yaml.full_load": "yaml.safe_load",
    "yaml.load_all": "yaml.safe_load_all", "pd.read_pickle": "JSON or CSV", "pandas.read_pickle": "JSON or CSV",
    "torch.jit.load": "state dicts with weights_only=True", "eval": "no eval", "exec": "no exec",
}  # fmt: skip
# call -> keyword that must be present with the value given
REQUIRED_KEYWORDS = {
    "torch.load": ("weights_only", True),
    "np.load": ("allow_pickle", False),
    "numpy.load": ("allow_pickle", False),
    "np.save": ("allow_pickle", False),
    "numpy.save": ("allow_pickle", False),
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def violations(source: str, name: str = "<source>") -> list[str]:
    """Every unsafe import or call in `source`, as 'name:line: what'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                if module.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{name}:{node.lineno}: imports {module}")
        if not isinstance(node, ast.Call):
            continue
        call = _dotted(node.func)
        if call in FORBIDDEN_CALLS:
            found.append(f"{name}:{node.lineno}: {call}() (use {FORBIDDEN_CALLS[call]})")
        if call in REQUIRED_KEYWORDS:
            key, value = REQUIRED_KEYWORDS[call]
            given = {k.arg: k.value for k in node.keywords}
            if not (key in given and isinstance(given[key], ast.Constant) and given[key].value is value):
                found.append(f"{name}:{node.lineno}: {call}() without {key}={value}")
    return found


def test_the_package_loads_nothing_unsafely():
    assert SOURCES and any(p.name == "checkpoint.py" for p in SOURCES)
    found = [v for path in SOURCES for v in violations(path.read_text(), str(path.relative_to(REPO)))]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(("snippet", "why"), [
    ("import pickle", "imports pickle"),
    ("from joblib import load", "imports joblib"),
    ("import torch\ntorch.load(p)", "torch.load() without weights_only=True"),
    ("import torch\ntorch.load(p, weights_only=False)", "torch.load() without weights_only=True"),
    ("import numpy as np\nnp.load(p)", "np.load() without allow_pickle=False"),
    ("import numpy as np\nnp.load(p, allow_pickle=True)", "np.load() without allow_pickle=False"),
    ("import yaml\nyaml.load(t, Loader=yaml.Loader)", "yaml.load() (use yaml.safe_load)"),
    ("import yaml\nyaml.unsafe_load(t)", "yaml.unsafe_load()"),
    ("eval(text)", "eval()"),
])  # fmt: skip
def test_the_scan_catches_each_regression(snippet, why):
    (found,) = violations(snippet)
    assert why in found


def test_the_scan_passes_the_safe_spellings():
    safe = ("import torch, yaml, numpy as np\ntorch.load(p, map_location='cpu', weights_only=True)\n"
            "np.load(p, allow_pickle=False)\nyaml.safe_load(t)\nnp.save(f, a, allow_pickle=False)\n")  # fmt: skip
    assert violations(safe) == []
