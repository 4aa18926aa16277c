"""The package's layers hold (the design's "Layers", and each subpackage's `__init__.py`): over
the import graph of every module under sm_magic/, read with `ast` (nothing is imported), no module
imports one in a layer above its own, no two modules import each other round a cycle, container/
is standard library only, the backends do not import each other, and no code outside backends/
switches on a backend's name.

Every import counts, wherever it is written: at the top, inside a function (a lazy import is
still a dependency, only a later one), and under `if TYPE_CHECKING:` (a type-only import still
ties the importing module to the other's names, and an annotation that names a layer above is the
same design fault as a call into it; only the cost at run time differs).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sm_magic"

# The layers, bottom (1) to top, as each subpackage's __init__.py docstring says what it may
# import: a module may import its own layer and any layer below it, never one above.
LAYERS = {
    # carried into the training image: standard library only
    "sm_magic.errors": 1,
    "sm_magic.console": 1,
    "sm_magic.container": 1,
    # "Imports only the standard library, pandas and errors.py"
    "sm_magic.display": 2,
    # "Imports only errors.py and display/"
    "sm_magic.config": 3,
    # "Imports config/, display/, container/ (failure lines) and errors.py"
    "sm_magic.metrics": 4,
    # "Imports config/, errors.py and console.py"
    "sm_magic.software": 5,
    # "Imports software/, metrics/ (metric definitions), config/, container/, errors.py and console.py"
    "sm_magic.bundle": 6,
    # base.py and __init__.py the contract; local/, sagemaker/ and local_container.py its siblings,
    # which import the contract and the layers below, never each other
    "sm_magic.backends": 7,
    # "Imports backends/ (through the contract ...), metrics/, config/, display/, container/ and errors.py"
    "sm_magic.jobs": 8,
    # "Imports jobs/, backends/, bundle/, software/, metrics/, config/, display/, container/, errors.py
    # and console.py"
    "sm_magic.plan": 9,
    # "Imports plan/, jobs/ and everything below them"
    "sm_magic.sweeps": 10,
    # "Imports sweeps/, jobs/ and every layer below; only magic/ and cli/ import it"
    "sm_magic.widgets": 11,
    # the surfaces: may import every layer below; nothing imports them
    "sm_magic.magic": 12,
    "sm_magic.cli": 12,
}
SURFACES = ("sm_magic.magic", "sm_magic.cli")
# Outside the layering: the package's lazy public names, and the public alias of container/runtime.py.
OUTSIDE = ("sm_magic", "sm_magic.runtime")
# The backends' siblings: each imports sm_magic.backends (__init__.py) and backends/base.py, never another.
BACKEND_CONTRACT = ("sm_magic.backends", "sm_magic.backends.base")
BACKEND_SIBLINGS = ("sm_magic.backends.local", "sm_magic.backends.sagemaker", "sm_magic.backends.local_container")
# The one backend built of two others, and which: local-container is the SageMaker SDK's own local
# mode (the request the SageMaker backend builds) run on the local backend's job directory. Nothing
# imports it but get_backend, and neither of its parts imports it.
COMPOSED = {"sm_magic.backends.local_container": ("sm_magic.backends.local", "sm_magic.backends.sagemaker")}
BACKEND_NAMES = ("local", "sagemaker", "local-container")
# Where a backend's name may be compared outside backends/: the config's own vocabulary, which
# maps `ec2_instance_type` ("local", "local_gpu", "local_container") to the backend it selects.
# "local" there is an instance type, a word of accelerate's YAML, not a switch on the backend.
NAME_COMPARE_ALLOWED = {("sm_magic.config.model", "TrainConfig.backend")}


@dataclass(frozen=True)
class Import:
    source: str   # the importing module, dotted
    target: str   # the imported module (sm_magic.*), or the top-level name of another package
    line: int
    relative: bool
    type_only: bool

    def where(self) -> str:
        return f"{_path(self.source)}:{self.line}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=None)
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@lru_cache(maxsize=None)
def _tree(module: str) -> ast.Module:
    path = _modules()[module]
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _path(module: str) -> str:
    return str(_modules()[module].relative_to(PACKAGE.parent))


def _is_package(module: str) -> bool:
    return _modules()[module].name == "__init__.py"


@lru_cache(maxsize=None)
def _lazy_names() -> dict[str, str]:
    """sm_magic/__init__.py's `_LAZY` table: `from sm_magic import launch` loads plan.planner."""
    for node in _tree("sm_magic").body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets):
            table = ast.literal_eval(node.value)
            return {name: f"sm_magic.{module}" for name, (module, _attr) in table.items()}
    return {}


def _known(dotted: str) -> str:
    """The longest prefix of `dotted` that is a module of the package."""
    parts = dotted.split(".")
    while parts:
        name = ".".join(parts)
        if name in _modules():
            return name
        parts.pop()
    raise AssertionError(f"{dotted} names no module under sm_magic/")


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else None
            if name == "TYPE_CHECKING":
                for child in node.body:
                    for inner in ast.walk(child):
                        if hasattr(inner, "lineno"):
                            lines.add(inner.lineno)
    return lines


@lru_cache(maxsize=None)
def imports_of(module: str) -> tuple[Import, ...]:
    """Every import the module makes, wherever written, each resolved to the module it loads:
    relative imports against the module's package, `from pkg import name` to pkg.name where that
    is a submodule, and `from sm_magic import name` through the package's lazy table."""
    tree = _tree(module)
    type_only = _type_checking_lines(tree)
    package = module if _is_package(module) else module.rpartition(".")[0]
    found: list[Import] = []

    def add(target: str, node: ast.stmt, relative: bool) -> None:
        one = Import(module, target, node.lineno, relative, node.lineno in type_only)
        if one not in found:  # `from .state import a, b` is one import of state
            found.append(one)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "sm_magic" or alias.name.startswith("sm_magic."):
                    add(_known(alias.name), node, False)
                else:
                    add(alias.name.partition(".")[0], node, False)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not (base == "sm_magic" or base.startswith("sm_magic.")):
                add(base.partition(".")[0], node, False)
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in _modules():
                    add(submodule, node, bool(node.level))
                elif base == "sm_magic" and alias.name in _lazy_names():
                    add(_lazy_names()[alias.name], node, bool(node.level))
                else:
                    add(_known(base), node, bool(node.level))
    return tuple(found)


def _internal(module: str) -> list[Import]:
    return [i for i in imports_of(module) if i.target in _modules() and i.target != module]


def layer_of(module: str) -> int | None:
    best = None
    for prefix, layer in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, layer)
    return best[1] if best else None


def _layer_name(module: str) -> str:
    prefix = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return f"{prefix.removeprefix('sm_magic.')} (layer {LAYERS[prefix]})"


def _graph() -> dict[str, set[str]]:
    return {m: {i.target for i in _internal(m)} for m in _modules()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each strongly connected component (Tarjan), as a chain that
    starts and ends at the same module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)

    chains = []
    for component in components:
        members = set(component)
        start = component[0]
        # breadth first from start back to start, inside the component
        paths = {w: [start, w] for w in sorted(graph[start] & members)}
        queue = list(paths)
        while start not in paths:
            v = queue.pop(0)
            for w in sorted(graph[v] & members):
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    queue.append(w)
        chains.append(paths[start])
    return chains


def _edge_lines(chain: list[str]) -> str:
    lines = []
    for a, b in zip(chain, chain[1:]):
        where = next(f"{i.where()}{' (TYPE_CHECKING)' if i.type_only else ''}" for i in _internal(a) if i.target == b)
        lines.append(f"      {a} -> {b}   at {where}")
    return "\n".join(lines)


# -- the layer table ----------------------------------------------------------------------------


def test_every_module_has_a_layer():
    loose = [m for m in _modules() if m not in OUTSIDE and layer_of(m) is None]
    assert not loose, ("modules in no layer (add the subpackage to LAYERS in tests/test_layers.py and say in "
                       f"its __init__.py what it may import): {', '.join(loose)}")
    empty = [p for p in LAYERS if p not in _modules()]
    assert not empty, f"layers with no module: {', '.join(empty)}"


def test_every_subpackage_says_what_it_may_import():
    missing = []
    for module, path in _modules().items():
        if path.name != "__init__.py" or module == "sm_magic":
            continue
        doc = ast.get_docstring(_tree(module)) or ""
        if "import" not in doc.lower():
            missing.append(_path(module))
    assert not missing, ("a subpackage's __init__.py docstring says what the subpackage may import "
                         f"(\"Imports ...\"); these do not: {', '.join(missing)}")


# -- the import graph ---------------------------------------------------------------------------


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (each edge with where it is written):\n" + "\n".join(
        f"  {' -> '.join(chain)}\n{_edge_lines(chain)}" for chain in cycles)


def test_no_import_points_up_the_layers():
    upward = []
    for module in _modules():
        own = layer_of(module)
        if own is None:
            continue
        for i in _internal(module):
            theirs = layer_of(i.target)
            if theirs is not None and theirs > own:
                upward.append(f"  {i.where()}: {module} [{_layer_name(module)}] imports {i.target} "
                              f"[{_layer_name(i.target)}]{' (under TYPE_CHECKING)' if i.type_only else ''}")
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


def test_nothing_imports_the_surfaces():
    found = []
    for module in _modules():
        for i in _internal(module):
            for surface in SURFACES:
                inside = module == surface or module.startswith(surface + ".")
                if (i.target == surface or i.target.startswith(surface + ".")) and not inside:
                    if module == "sm_magic" and surface == "sm_magic.magic":
                        continue  # load_ipython_extension: %load_ext sm_magic registers the magics
                    found.append(f"  {i.where()}: {module} imports {i.target}")
    assert not found, "magic/ and cli/ are surfaces nothing imports:\n" + "\n".join(found)


def test_lower_layers_do_not_reach_up_through_the_package():
    """`from sm_magic import launch` loads plan.planner through the lazy table; it is resolved to
    that module above, so the layer test sees it. A layered module importing the package itself
    for anything else would be an edge the layers cannot see."""
    found = [f"  {i.where()}: {m} imports sm_magic (the package)" for m in _modules() if layer_of(m)
             for i in _internal(m) if i.target == "sm_magic"]
    assert not found, "\n".join(found)


# -- container/ and sm_magic/runtime.py ----------------------------------------------------------


def test_container_is_standard_library_only():
    wrong = []
    for module in _modules():
        if not (module == "sm_magic.container" or module.startswith("sm_magic.container.")):
            continue
        for i in imports_of(module):
            if i.target.startswith("sm_magic"):
                # entry.py is copied into the bundle as sm_entry.py, so a relative import would
                # not resolve; it imports its siblings by their absolute names, which the bundle carries.
                if module == "sm_magic.container.entry" and i.target.startswith("sm_magic.container.") \
                        and not i.relative:
                    continue
                wrong.append(f"  {i.where()}: {module} imports {i.target} (container/ imports nothing from "
                             "sm_magic but entry.py's absolute sm_magic.container.* imports)")
            elif i.target not in sys.stdlib_module_names:
                wrong.append(f"  {i.where()}: {module} imports {i.target}, not in the standard library")
    assert not wrong, "container/ runs in the training image, where sm_magic is not installed:\n" + "\n".join(wrong)


def test_container_parses_as_python_3_8():
    wrong = []
    for module, path in _modules().items():
        if module == "sm_magic.container" or module.startswith("sm_magic.container."):
            try:
                ast.parse(path.read_text(encoding="utf-8"), feature_version=(3, 8))
            except SyntaxError as e:
                wrong.append(f"  {_path(module)}:{e.lineno}: {e.msg}")
    assert not wrong, "container/ runs under the image's Python, 3.8 at the oldest:\n" + "\n".join(wrong)


def test_public_runtime_is_only_the_container_runtime():
    targets = {i.target for i in imports_of("sm_magic.runtime")} - {"__future__"}
    assert targets == {"sm_magic.container.runtime"}, (
        f"sm_magic/runtime.py imports only container/runtime.py (the bundle carries it); it imports {sorted(targets)}")


# -- backends ------------------------------------------------------------------------------------


def _sibling(module: str) -> str | None:
    return next((s for s in BACKEND_SIBLINGS if module == s or module.startswith(s + ".")), None)


def test_backends_do_not_import_each_other():
    wrong = []
    for module in _modules():
        mine = _sibling(module)
        if mine is None:
            continue
        for i in _internal(module):
            if not i.target.startswith("sm_magic.backends"):
                continue
            theirs = _sibling(i.target)
            if theirs is not None and theirs != mine and theirs not in COMPOSED.get(mine, ()):
                wrong.append(f"  {i.where()}: {module} imports {i.target}, another backend")
            elif theirs is None and i.target not in BACKEND_CONTRACT:
                wrong.append(f"  {i.where()}: {module} imports {i.target}, not the contract "
                             f"({' or '.join(BACKEND_CONTRACT)})")
    assert not wrong, "a backend imports the contract and the layers below, never another backend:\n" + "\n".join(wrong)


def _name_constants(node: ast.AST) -> list[str]:
    """The backend names a compared operand spells out: a string, or a tuple/list/set of them."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [i.value for i in items if isinstance(i, ast.Constant) and i.value in BACKEND_NAMES]


def _pattern_constants(pattern: ast.pattern) -> list[str]:
    found = []
    for node in ast.walk(pattern):
        if isinstance(node, ast.MatchValue) and isinstance(node.value, ast.Constant) \
                and node.value.value in BACKEND_NAMES:
            found.append(node.value.value)
    return found


def _qualified_functions(tree: ast.Module) -> dict[int, str]:
    """Each line's innermost enclosing function or class, as Class.method."""
    where: dict[int, str] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}.{child.name}" if prefix else child.name
                for line in range(child.lineno, (child.end_lineno or child.lineno) + 1):
                    where[line] = name
                walk(child, name)
            else:
                walk(child, prefix)

    walk(tree, "")
    return where


def test_no_switch_on_a_backend_name_outside_backends():
    """What differs between backends is asked of the Backend (backends/base.py), not decided by
    comparing its name: `backend == "local"`, `name in ("local", "local-container")` or a `match`
    case on a name, outside backends/, is a switch that the next backend has to find and extend."""
    found = []
    for module in _modules():
        if module == "sm_magic.backends" or module.startswith("sm_magic.backends."):
            continue
        tree = _tree(module)
        functions = _qualified_functions(tree)
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Compare):
                for operand in [node.left, *node.comparators]:
                    names += _name_constants(operand)
            elif isinstance(node, ast.match_case):
                names += _pattern_constants(node.pattern)
            if not names:
                continue
            line = node.pattern.lineno if isinstance(node, ast.match_case) else node.lineno
            function = functions.get(line, "<module>")
            if (module, function) in NAME_COMPARE_ALLOWED:
                continue
            code = ast.get_source_segment(_modules()[module].read_text(encoding="utf-8"),
                                          node.pattern if isinstance(node, ast.match_case) else node)
            found.append(f"  {_path(module)}:{line} in {function}: {code}")
    assert not found, "comparisons against a backend's name outside backends/:\n" + "\n".join(found)


@pytest.mark.parametrize("module", ["sm_magic.container.entry", "sm_magic.backends.local.backend"])
def test_the_graph_reader_sees_lazy_and_relative_imports(module):
    """The reader itself: entry.py's absolute sibling imports are inside functions, the local
    backend's contract import is relative; both are found and resolved to modules."""
    targets = {i.target for i in _internal(module)}
    expected = {"sm_magic.container.entry": "sm_magic.container.failure",
                "sm_magic.backends.local.backend": "sm_magic.backends.base"}[module]
    assert expected in targets, sorted(targets)
