"""The shape of the package, read from its source with ``ast`` (nothing is imported).

Each idea has one home and the data flows one way (docs/developer/architecture.rst):

- no import circle between the modules of ``skconcepts`` (imports inside functions
  count too: a deferred import still ties two modules together);
- no module imports a private name (``_x``) from another skconcepts module outside
  its own subpackage; ``skconcepts.utils`` is shared by everyone and excepted;
- (``cli.py`` only parses arguments and dispatches: ``tests/test_cli.py``.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "skconcepts"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(module: str, level: int, current: str) -> str:
    if level == 0:
        return module or ""
    base = current.split(".")
    if not _is_package(current):
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _imports(name: str, source: str | None = None):
    """``(imported module, imported names, line)`` for every import in a module."""
    if source is None:
        source = MODULES[name].read_text(encoding="utf-8")
    tree = ast.parse(source)
    type_checking = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_checking.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node.module, node.level, name)
            names = [alias.name for alias in node.names]
            # "from skconcepts.concepts import nmf" imports a module
            submodules = [n for n in names if f"{target}.{n}" in MODULES]
            for sub in submodules:
                yield f"{target}.{sub}", [], node.lineno
            rest = [n for n in names if n not in submodules]
            if rest:
                yield target, rest, node.lineno


def _graph():
    graph = {}
    for name in MODULES:
        edges = set()
        for target, _, _ in _imports(name):
            if target in MODULES and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def _home(name: str) -> str:
    """The unit that may share private names: a subpackage, or the module itself."""
    parts = name.split(".")
    # skconcepts.concepts.nmf -> skconcepts.concepts; skconcepts.cli -> itself
    return ".".join(parts[:2])


def test_the_reader_sees_every_module():
    for expected in ("skconcepts", "skconcepts.cli", "skconcepts.activations"):
        assert expected in MODULES
    assert len(_graph()) == len(MODULES)


def test_no_import_circle():
    graph = _graph()
    circles = []
    state = {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                circles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def _private_imports(name: str, source: str | None = None):
    offences = []
    for target, names, line in _imports(name, source):
        if not target.startswith("skconcepts") or target.startswith("skconcepts.utils"):
            continue
        if _home(target) == _home(name):
            continue
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        if private:
            offences.append(f"{name}:{line} <- {target}: {private}")
    return offences


def test_no_private_name_crosses_a_subpackage():
    offences = [o for name in MODULES for o in _private_imports(name)]
    assert not offences, "private names imported across modules:\n" + "\n".join(
        offences
    )


@pytest.mark.parametrize(
    "module, source, n_offences",
    [
        ("skconcepts.interpret", "from skconcepts.metrics import _concept_step", 1),
        ("skconcepts.interpret", "from .metrics import _concept_step", 1),
        ("skconcepts.interpret", "from skconcepts.metrics import reconstruction_r2", 0),
        ("skconcepts.interpret", "from skconcepts.utils._torch import to_numpy", 0),
        ("skconcepts.store._extract", "from skconcepts.store._format import _x", 0),
        ("skconcepts.store._extract", "from skconcepts.concepts._base import _y", 1),
    ],
)
def test_the_private_name_rule_reads_what_it_should(module, source, n_offences):
    # the rule itself can fail: private imports across homes are found, others not
    assert len(_private_imports(module, source)) == n_offences
