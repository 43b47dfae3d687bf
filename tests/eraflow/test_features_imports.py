"""The feature engine's import layering, read from the source with ``ast`` (no import needed).

The rules (see ``eraflow/stages/features/__init__.py``): the registry is a leaf; a calculator module
(one that registers features with ``@feature``) imports only the registry, the shared kernels,
``arrays`` and ``segments`` of the package, never another calculator module; the kernel layer
never imports the registry, the catalogue, the engine or a calculator module; the catalogue is
the one place that imports the calculator modules, in the registration order. Function-level
imports count as imports. These rules are what keeps the import circle from coming back.
"""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = "eraflow.stages.features"
ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "eraflow" / "stages" / "features"

CALCULATOR_MAY_IMPORT = {"registry", "kernels", "arrays", "segments"}
KERNEL_LAYER = {"kernels", "spectral", "cwt_peaks", "exact", "arrays", "segments"}
KERNEL_LAYER_MAY_IMPORT = KERNEL_LAYER
ERAFLOW_OUTSIDE_ALLOWED = {
    "eraflow.common.errors",
    "eraflow.common.jit",
    "eraflow.common.literals",
}  # leaves
EXPECTED_CALCULATOR_MODULES = {
    "calculators_basic",
    "calculators_complexity",
    "calculators_models",
    "calculators_signal",
    "calculators_tsfresh",
    "rolling",
}


def modules() -> dict[str, ast.Module]:
    """Every module of the package by its short name (``__init__`` included), parsed."""
    return {
        path.stem: ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for path in sorted(SOURCE.glob("*.py"))
    }


def imported(tree: ast.Module) -> list[str]:
    """Full names of the ``eraflow`` modules a module imports, anywhere in it, in order.

    ``from eraflow.stages.features import arrays`` names the submodule
    ``eraflow.stages.features.arrays``; ``from eraflow.stages.features.registry import feature``
    names ``eraflow.stages.features.registry``.
    """
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == PACKAGE:
                names += [f"{PACKAGE}.{a.name}" for a in node.names]
            else:
                names.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError("relative imports hide the layering: use absolute imports")
    return [n for n in names if n == "eraflow" or n.startswith("eraflow.")]


def package_imports(tree: ast.Module) -> set[str]:
    """Short names of the package's own modules that a module imports."""
    prefix = PACKAGE + "."
    return {n[len(prefix) :].split(".")[0] for n in imported(tree) if n.startswith(prefix)}


def registers_features(tree: ast.Module) -> bool:
    """True when the module calls the registry's ``feature`` (as a decorator or directly)."""
    imports_it = any(
        isinstance(node, ast.ImportFrom)
        and node.module == f"{PACKAGE}.registry"
        and any(a.name == "feature" and a.asname is None for a in node.names)
        for node in ast.walk(tree)
    )
    calls_it = any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "feature"
        for node in ast.walk(tree)
    )
    return imports_it and calls_it


MODULES = modules()
CALCULATORS = {name for name, tree in MODULES.items() if registers_features(tree)}


def test_the_calculator_modules_are_the_known_ones():
    # A new calculator module belongs in the catalogue and in this list.
    assert CALCULATORS == EXPECTED_CALCULATOR_MODULES


def test_the_registry_is_a_leaf():
    assert package_imports(MODULES["registry"]) == set()
    outside = {n for n in imported(MODULES["registry"]) if not n.startswith(PACKAGE)}
    assert outside <= ERAFLOW_OUTSIDE_ALLOWED


@pytest.mark.parametrize("name", sorted(EXPECTED_CALCULATOR_MODULES))
def test_a_calculator_module_imports_only_the_registry_and_the_kernels(name):
    tree = MODULES[name]
    inside = package_imports(tree)
    assert inside <= CALCULATOR_MAY_IMPORT, (
        f"{name} imports {sorted(inside - CALCULATOR_MAY_IMPORT)}"
    )
    assert not inside & CALCULATORS
    outside = {n for n in imported(tree) if not n.startswith(PACKAGE)}
    assert outside <= ERAFLOW_OUTSIDE_ALLOWED, f"{name} imports {sorted(outside)}"


@pytest.mark.parametrize("name", sorted(KERNEL_LAYER))
def test_the_kernel_layer_imports_no_registry_and_no_calculator(name):
    tree = MODULES[name]
    inside = package_imports(tree)
    assert inside <= KERNEL_LAYER_MAY_IMPORT - {name}, f"{name} imports {sorted(inside)}"
    assert not registers_features(tree)
    outside = {n for n in imported(tree) if not n.startswith(PACKAGE)}
    assert outside <= ERAFLOW_OUTSIDE_ALLOWED, f"{name} imports {sorted(outside)}"


def test_only_the_catalogue_imports_calculator_modules():
    importers = {
        name
        for name, tree in MODULES.items()
        if package_imports(tree) & CALCULATORS and name not in ("catalog", "__init__")
    }
    assert importers == set()
    assert package_imports(MODULES["catalog"]) == CALCULATORS
    assert "catalog" in package_imports(MODULES["__init__"])


def test_no_module_of_the_package_imports_prefect():
    for name, tree in MODULES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert "prefect" not in roots, name


def test_the_package_import_graph_has_no_cycle():
    graph = {name: package_imports(tree) - {"__init__"} for name, tree in MODULES.items()}
    graph.pop("__init__")
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError(f"import cycle: {' -> '.join([*path, node, nxt])}")
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_the_registry_follows_the_catalogue_order():
    from eraflow.stages.features import feature_registry
    from eraflow.stages.features.catalog import CALCULATOR_MODULES

    order = [c.func.__module__ for c in feature_registry().values()]
    blocks = [module for module, _ in itertools.groupby(order)]
    assert blocks == [m.__name__ for m in CALCULATOR_MODULES]
    assert {m.__name__.rsplit(".", 1)[1] for m in CALCULATOR_MODULES} == CALCULATORS


def test_importing_a_calculator_module_first_gives_the_same_registry():
    """Registration order does not depend on which module of the package is imported first."""
    from eraflow.stages.features import feature_registry

    script = (
        "import eraflow.stages.features.calculators_signal\n"
        "from eraflow.stages.features.registry import feature_registry\n"
        "print(' '.join(feature_registry()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == list(feature_registry())
