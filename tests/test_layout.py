"""The package layout as the code states it: imports flow one way, with no cycle.

Every ``import`` statement counts, at module level or inside a function (a function-local import
hides a cycle from Python, not from this test), and so do the lazy names of ``trainables``'s
``__getattr__``. The registry's built-in table names families as dotted-path strings, the same form a
user's family takes: data, resolved at run time, listed separately and checked to point only from
the family registry to ``trainables.families``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("trainables", "study", "analysis")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in its text)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, path, node)
                # ``from pkg import sub`` imports the submodule when there is one.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]  # fmt: skip
            for target in targets:
                while target and target not in modules:  # ``a.b.c`` -> the module that holds it
                    target = target.rpartition(".")[0]
                if target and target != module:
                    graph[module].add(target)
    import trainables

    for target in set(trainables._LAZY.values()):  # the package's lazy names
        graph["trainables"].add("trainables" + target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_anywhere():
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_packages_import_downward_only():
    # study (the runner, the CLI) -> analysis -> trainables: a report never needs the runner.
    below = {"trainables": ("analysis", "study"), "analysis": ("study",)}
    for module, targets in import_graph().items():
        above = below.get(module.split(".")[0], ())
        assert not [t for t in targets if t.split(".")[0] in above], module


def test_the_framework_imports_no_family():
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("trainables.core"):
            assert not [t for t in targets if t.startswith("trainables.families")], module
        if module.startswith(("trainables.data", "trainables.metrics")):
            assert not [
                t for t in targets if t.startswith(("trainables.core", "trainables.families"))
            ], module


def test_builtin_families_are_named_as_data_pointing_down_into_families():
    from trainables.core.builtins import BUILTIN_FAMILIES

    for name, path in BUILTIN_FAMILIES.items():
        module, _, attribute = path.partition(":")
        assert module == f"trainables.families.{name}", (name, path)
        assert (ROOT / "trainables" / "families" / f"{name}.py").is_file()


@pytest.mark.parametrize(
    "module",
    ["study.status", "study.records", "study.cli", "trainables.metrics", "trainables.data",
     "trainables.core.outputs", "analysis.report"],
)  # fmt: skip
def test_light_commands_import_neither_ray_nor_torch(module):
    code = f"import sys, {module}; print(sorted({{'ray', 'torch'}} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# One algorithm, kept whole: gradient boosting in compiled kernels, checked tree for tree against
# scikit-learn's (tests/metrics_tests/test_exact_boosting.py).
LONG_ON_PURPOSE = {"trainables/metrics/_exact_boosting.py"}


def test_files_stay_small():
    long = {
        name: n
        for p in _modules().values()
        if (name := str(p.relative_to(ROOT))) not in LONG_ON_PURPOSE
        and (n := len(p.read_text().splitlines())) > 470
    }
    assert long == {}


def test_status_reads_journals_without_loading_training_or_tracking_libraries():
    """`study status` answers from the launch's JSON: it must not pay for torch, scikit-learn or
    MLflow (seconds of imports). A subprocess, so nothing another test imported counts."""
    import subprocess
    import sys

    code = (
        "import sys, study.cli_launch, study.status\n"
        "heavy = [m for m in ('torch', 'sklearn', 'scipy.stats', 'mlflow', 'ray.tune') "
        "if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_every_name_of_the_metrics_package_resolves():
    import trainables.metrics as metrics

    for name in metrics.__all__:
        assert getattr(metrics, name) is not None, name
    assert metrics.get_metric("mig").outputs == ("mig",)


def test_study_list_names_every_family_and_metric_without_loading_them():
    """`study list` reads the families' descriptions from their source and the metrics' names from
    ``names.BUILTIN_METRICS``: the same text and names as the loaded registries, and no torch,
    scikit-learn or MLflow in the process."""
    from trainables import FAMILIES
    from trainables.metrics import METRICS

    code = (
        "import sys, contextlib, io\n"
        "from study.cli_results import list_registries\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    list_registries()\n"
        "heavy = [m for m in ('torch', 'sklearn', 'mlflow', 'ray') if m in sys.modules]\n"
        "print(repr(heavy))\n"
        "print(repr(out.getvalue()))\n"
    )
    env = {**os.environ, "COLUMNS": "100000"}  # one line per registry
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    heavy, listing = (eval(line) for line in out.stdout.strip().splitlines()[-2:])
    assert heavy == []
    described = ", ".join(f"{name} ({FAMILIES.get(name).description})" for name in FAMILIES)
    assert f"families: {described}\n" in listing
    assert f"metrics:  {', '.join(sorted(METRICS))}\n" in listing
