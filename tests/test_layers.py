"""The package's layers (docs/architecture.md): no import circle, no import up a layer, imports at
the top of their file except the optional dependencies the document names.

Every import statement of the package is read from the source (function bodies included), so a
circle hidden in a function is found as surely as one at the top."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "workbench"
DOC = ROOT / "docs" / "architecture.md"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def documented_layers(text: str) -> dict[str, int]:
    """{module: layer} from the table of docs/architecture.md (rows ``| n | name | `mod`, ... |``)."""
    layers: dict[str, int] = {}
    for row in re.findall(r"^\| (\d+) \| [^|]+ \| ([^|]+) \|", text, flags=re.M):
        for mod in re.findall(r"`([\w.]+)`", row[1]):
            assert mod not in layers, f"{mod} is in two layers of {DOC.name}"
            layers[mod] = int(row[0])
    return layers


def optional_dependencies(text: str) -> set[str]:
    line = next(line for line in text.split("\n\n") if line.startswith("Optional dependencies imported inside"))
    return set(re.findall(r"`(\w+)`", line.split(":", 1)[1])) - {"dev", "bench"}


def imports(path: Path, modules: set[str]) -> list[tuple[str, bool, str]]:
    """(imported name, at the top of the file, what) for every import of ``path``: workbench modules
    by their name in ``modules``, others by their top-level package."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names] or [node.module]
        else:
            continue
        for name in names:
            if name.startswith("workbench"):
                rest = name.removeprefix("workbench").lstrip(".")
                while rest and rest not in modules:  # `from workbench.x import name`: the module x
                    rest = rest.rpartition(".")[0]
                name = f"workbench.{rest or '__init__'}"
            found.append((name, id(node) in top or _under_type_checking(tree, node), ast.unparse(node)))
    return found


def _under_type_checking(tree: ast.Module, node: ast.AST) -> bool:
    return any(isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test) and node in ast.walk(n)
               for n in tree.body)


@pytest.fixture(scope="module")
def graph():
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    edges = {m: {name.removeprefix("workbench.") for name, _, _ in imports(p, modules) if name.startswith("workbench.")}
             - {m} for m, p in paths.items()}
    return paths, edges


def test_every_module_has_one_documented_layer(graph):
    paths, _ = graph
    layers = documented_layers(DOC.read_text())
    assert set(paths) == set(layers), (f"modules missing from {DOC.name}: {sorted(set(paths) - set(layers))}; "
                                       f"listed but absent: {sorted(set(layers) - set(paths))}")


def test_no_import_goes_up_a_layer(graph):
    _, edges = graph
    layers = documented_layers(DOC.read_text())
    up = [f"{m} (layer {layers[m]}) imports {t} (layer {layers[t]})"
          for m, targets in edges.items() for t in targets if layers[t] > layers[m]]
    assert not up, "\n".join(up)


def test_the_import_graph_has_no_circle(graph):
    _, edges = graph
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges[m]):
            assert state.get(t) != 1, "import circle: " + " -> ".join(path[path.index(t):] + [t])
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])


def test_imports_sit_at_the_top_except_optional_dependencies(graph):
    paths, _ = graph
    optional = optional_dependencies(DOC.read_text())
    assert optional == {"soundfile", "nbformat", "nbclient", "nbconvert", "torch_audiomentations"}
    hidden = [f"{m}: {what}" for m, p in paths.items() for name, at_top, what in imports(p, set(paths))
              if not at_top and name.split(".")[0] not in optional]
    assert not hidden, "imports inside functions:\n" + "\n".join(hidden)


def test_the_checks_find_a_circle_hidden_in_a_function(tmp_path):
    """The graph reader sees an import inside a function: a two-module circle closed that way is found."""
    (tmp_path / "a.py").write_text("from workbench.b import f\n")
    (tmp_path / "b.py").write_text("def f():\n    from workbench.a import g\n")
    modules = {"a", "b"}
    edges = {m: {n.removeprefix("workbench.") for n, _, _ in imports(tmp_path / f"{m}.py", modules)} for m in modules}
    assert edges == {"a": {"b"}, "b": {"a"}}
    at_top = {m: [top for _, top, _ in imports(tmp_path / f"{m}.py", modules)] for m in modules}
    assert at_top == {"a": [True], "b": [False]}
