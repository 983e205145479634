"""The layout's rules, checked on the source: the dependency rule as ARCHITECTURE.md writes it (its one-line order of
levels and its package table's imports column are the data), no import cycle of any length, short functions, and the
run directory's file names in one package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "imgclf"
RUN_FILES = re.compile(
    r"^(summary\.json|calibration\.json|config\.yaml|split\.csv|classes\.json|preprocessing\.json|metrics\.csv|"
    r"val_predictions\.csv|report\.html|mlflow_run\.json|run\.json|environment\.json|last\.pt|best\.safetensors|"
    r"checkpoints|eval|per_class\.csv|confusion_matrix\.(csv|png)|tta_compare\.(csv|md)|recipe\.json|"
    r"cv\.json|cv_config\.yaml|folds\.csv|oof\.csv|label_issues\.csv|ensemble\.json)$"
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
            named = {f"{node.module}.{a.name}" for a in node.names}
            found |= named & set(MODULES)
            if not named <= set(MODULES):  # `from imgclf import api` imports imgclf.api, not imgclf's own names
                found.add(node.module)
    return found


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


ARCHITECTURE = PACKAGE.parent / "ARCHITECTURE.md"


def _short(module: str) -> str:
    """The package a module belongs to, as ARCHITECTURE.md names it: ``imgclf.data.split`` → ``data``,
    ``imgclf.api`` → ``api``, ``imgclf`` (the package's ``__init__``) → ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _levels() -> list[set[str]]:
    """ARCHITECTURE.md's dependency rule, lowest level first: the code line after "The dependency rule", levels
    separated by ``←``, the packages of one level by commas."""
    text = ARCHITECTURE.read_text()
    rule = re.search(r"\*\*The dependency rule[^\n]*\n`([^`]+)`", text).group(1)
    return [{name.strip() for name in level.split(",")} for level in rule.split("←")]


LEVELS = _levels()
LEVEL = {name: i for i, level in enumerate(LEVELS) for name in level}


def _package_imports() -> dict[str, set[str]]:
    """Every package and the other packages its modules import (lazily or not)."""
    found: dict[str, set[str]] = {}
    for module, tree in MODULES.items():
        found.setdefault(_short(module), set()).update(_short(i) for i in _imports(tree) if i in MODULES)
    return {name: deps - {name} for name, deps in found.items()}


PACKAGE_IMPORTS = _package_imports()


def test_every_package_has_one_level_in_the_dependency_rule():
    listed = [name for level in LEVELS for name in level]
    assert sorted(set(PACKAGE_IMPORTS) - set(listed)) == [] and sorted(set(listed) - set(PACKAGE_IMPORTS)) == []
    assert len(listed) == len(set(listed))


@pytest.mark.parametrize("package", sorted(PACKAGE_IMPORTS))
def test_packages_import_only_lower_levels(package):
    upward = {d for d in PACKAGE_IMPORTS[package] if LEVEL.get(d, -1) >= LEVEL.get(package, -1)}
    assert upward == set(), f"{package} (level {LEVEL.get(package)}) imports {sorted(upward)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _short(m) in ("infer", "report")))
def test_infer_and_report_do_not_import_training(module):
    assert not {i for i in _imports(MODULES[module]) if _short(i) == "training"}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_of_any_length():
    graph = {m: {i for i in _imports(t) if i in MODULES and i != m} for m, t in MODULES.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_three_module_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _table_imports() -> dict[str, set[str]]:
    """ARCHITECTURE.md's package table: each row's package and its "imports" column."""
    rows = {}
    for line in ARCHITECTURE.read_text().splitlines():
        match = re.match(r"^\| `imgclf/([a-z_]+)(?:\.py|/)` \|.*\| ([^|]+) \|$", line)
        if match:
            column = match.group(2).strip()
            rows[match.group(1)] = set() if column == "—" else {n.strip() for n in column.split(",")}
    return rows


def test_the_package_table_lists_every_package_and_exactly_what_it_imports():
    table = _table_imports()
    described = {name for name in PACKAGE_IMPORTS if name not in ("__init__", "__main__")}
    assert sorted(described - set(table)) == []
    wrong = {
        name: (sorted(table[name]), sorted(PACKAGE_IMPORTS.get(name, set())))
        for name in table
        if table[name] != PACKAGE_IMPORTS.get(name, set())
    }
    assert wrong == {}, "ARCHITECTURE.md's imports column (first) differs from the code (second)"


def test_no_function_outside_the_cli_is_longer_than_60_lines():
    long = [
        f"{name}.{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for name, tree in MODULES.items()
        if not _in(name, ("imgclf.cli",))
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60
    ]
    assert long == []


# The same word naming something else: torch.hub's own download folder.
NOT_RUN_FILES = {("imgclf.models.hub", "checkpoints")}


def test_run_file_names_are_written_only_in_the_run_package():
    places = [
        f"{name}:{node.lineno} {node.value!r}"
        for name, tree in MODULES.items()
        if not _in(name, ("imgclf.run",))
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and RUN_FILES.match(node.value)
        and (name, node.value) not in NOT_RUN_FILES
    ]
    assert places == []


def test_one_url_masker_and_one_redactor():
    defs = [
        f"{name}.{node.name}"
        for name, tree in MODULES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name in ("mask_url", "redact")
    ]
    assert sorted(defs) == ["imgclf.secrets.mask_url", "imgclf.secrets.redact"]


def _top_level_names(tree: ast.Module) -> set[str]:
    """What a module defines or imports at its top, and its classes' methods as ``Class.method``."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                names |= {
                    f"{node.name}.{m.name}" for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))
                }
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def test_every_docstring_reference_to_imgclf_names_a_thing_that_exists():
    """``:func:`imgclf.x.y``` and the like, in the code and the docs: a module moved or a function renamed leaves no
    stale pointer behind (one said ``calibrate.choose_adaptive_threshold`` long after calibrate was gone)."""
    names = {module: _top_level_names(tree) for module, tree in MODULES.items()}

    def exists(ref: str) -> bool:
        parts = ref.split(".")
        return ref in names or any(
            ".".join(parts[:i]) in names and ".".join(parts[i:]) in names[".".join(parts[:i])]
            for i in range(len(parts) - 1, 0, -1)
        )

    texts = [
        *PACKAGE.rglob("*.py"),
        ARCHITECTURE,
        PACKAGE.parent / "README.md",
        *(PACKAGE.parent / "docs").rglob("*.md"),
    ]
    stale = [
        f"{path.name}: {m.group(1)}"
        for path in texts
        for m in re.finditer(r":(?:mod|func|class|data|meth|attr):`~?(imgclf(?:\.\w+)+)`", path.read_text())
        if not exists(m.group(1))
    ]
    assert stale == []
