"""The layout's rules, checked on the source: layering, no import cycles, short functions, and the
run directory's file names in one package (ARCHITECTURE.md states them)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "imgclf"
RUN_FILES = re.compile(
    r"^(summary\.json|calibration\.json|config\.yaml|split\.csv|classes\.json|preprocessing\.json|metrics\.csv|"
    r"val_predictions\.csv|report\.html|mlflow_run\.json|run\.json|environment\.json|last\.pt|best\.safetensors|"
    r"checkpoints|eval|per_class\.csv|confusion_matrix\.(csv|png)|tta_compare\.(csv|md))$"
)


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out[name] = ast.parse(path.read_text(), str(path))
    return out


MODULES = _modules()


def _imports(tree: ast.Module) -> set[str]:
    """Every imgclf module a module imports, at the top or inside a function (lazily)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("imgclf")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("imgclf"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES}
    return found


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


LOW = ("imgclf.train", "imgclf.data", "imgclf.models", "imgclf.run", "imgclf.eval", "imgclf.runtime", "imgclf.config",
       "imgclf.io", "imgclf.errors", "imgclf.secrets", "imgclf.finetune")
HIGH = ("imgclf.infer", "imgclf.experiments", "imgclf.budget", "imgclf.report", "imgclf.cli")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, LOW)))
def test_lower_layers_never_import_higher_ones(module):
    assert not {i for i in _imports(MODULES[module]) if _in(i, HIGH)}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, ("imgclf.infer", "imgclf.report"))))
def test_infer_and_report_do_not_import_train(module):
    assert not {i for i in _imports(MODULES[module]) if _in(i, ("imgclf.train",))}


def test_no_two_modules_import_each_other():
    pairs = [(a, b) for a in MODULES for b in _imports(MODULES[a]) if b in MODULES and b != a
             and a in _imports(MODULES[b]) and a < b]
    assert pairs == []


def test_no_function_outside_the_cli_is_longer_than_60_lines():
    long = [f"{name}.{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for name, tree in MODULES.items() if not _in(name, ("imgclf.cli",))
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > 60]
    assert long == []


# The same word naming something else: torch.hub's own download folder.
NOT_RUN_FILES = {("imgclf.models.hub", "checkpoints")}


def test_run_file_names_are_written_only_in_the_run_package():
    places = [f"{name}:{node.lineno} {node.value!r}" for name, tree in MODULES.items() if not _in(name, ("imgclf.run",))
              for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
              and RUN_FILES.match(node.value) and (name, node.value) not in NOT_RUN_FILES]
    assert places == []


def test_one_url_masker_and_one_redactor():
    defs = [f"{name}.{node.name}" for name, tree in MODULES.items() for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.name in ("mask_url", "redact")]
    assert sorted(defs) == ["imgclf.secrets.mask_url", "imgclf.secrets.redact"]
