"""Which names a script uses but never defines, found with `ast` alone (nothing is run).

A job runs its cell on its own, without the notebook's namespace: a name the cell only reads,
that the notebook defined in another cell (a helper function, an import), is a NameError minutes
into the job. `free_names` finds such names before launch; `module_names` says what a cell leaves
in the namespace, to tell where a name came from.

The check leans towards silence: a name bound anywhere in the code (any scope, any kind of
binding) counts as defined, annotations are not read, and code whose names cannot be known
statically (`from x import *`, `exec(...)`, a bare `globals()`/`locals()`/`vars()`) is not checked.
"""

from __future__ import annotations

import ast
import builtins

# What every module has without defining it.
MODULE_NAMES = frozenset({"__name__", "__file__", "__doc__", "__spec__", "__loader__", "__package__",
                          "__builtins__", "__cached__", "__annotations__", "__path__", "__debug__"})
BUILTIN_NAMES = frozenset(dir(builtins)) | MODULE_NAMES
# Calls after which the names a module defines cannot be known from its text.
_OPAQUE_CALLS = frozenset({"exec", "globals", "locals", "vars"})
_TYPE_PARAMS = tuple(getattr(ast, n) for n in ("TypeVar", "ParamSpec", "TypeVarTuple") if hasattr(ast, n))
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


class _Bindings(ast.NodeVisitor):
    """What both visitors bind alike: imports and match-statement captures."""

    def __init__(self):
        self.bound: set[str] = set()
        self.opaque = False  # `from x import *`: the names it binds are unknown

    def visit_Import(self, node: ast.Import) -> None:
        self.bound.update(a.asname or a.name.split(".")[0] for a in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name == "*":
                self.opaque = True
            else:
                self.bound.add(alias.asname or alias.name)

    def visit_MatchAs(self, node) -> None:
        if node.name:
            self.bound.add(node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node) -> None:
        if node.name:
            self.bound.add(node.name)

    def visit_MatchMapping(self, node) -> None:
        if node.rest:
            self.bound.add(node.rest)
        self.generic_visit(node)


class _Uses(_Bindings):
    """Every name read and every name bound, in any scope; annotations skipped."""

    def __init__(self):
        super().__init__()
        self.loads: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        (self.bound if isinstance(node.ctx, ast.Store) else self.loads).add(node.id)

    def _function(self, node) -> None:
        self.bound.add(node.name)
        for expr in node.decorator_list:
            self.visit(expr)
        self._arguments(node.args)
        for param in getattr(node, "type_params", ()):
            self.visit(param)
        for stmt in node.body:
            self.visit(stmt)

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._arguments(node.args)
        self.visit(node.body)

    def _arguments(self, args: ast.arguments) -> None:
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if arg is not None:
                self.bound.add(arg.arg)  # the annotation is not read
        for default in (*args.defaults, *args.kw_defaults):
            if default is not None:
                self.visit(default)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.bound.add(node.name)
        for expr in (*node.decorator_list, *node.bases, *(k.value for k in node.keywords)):
            self.visit(expr)
        for param in getattr(node, "type_params", ()):
            self.visit(param)
        for stmt in node.body:
            self.visit(stmt)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.visit(node.target)
        if node.value is not None:
            self.visit(node.value)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.bound.add(node.name)
        self.generic_visit(node)

    def visit_Global(self, node) -> None:
        self.bound.update(node.names)

    visit_Nonlocal = visit_Global

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id in _OPAQUE_CALLS:
            if node.func.id == "exec" or not (node.args or node.keywords):
                self.opaque = True
        self.generic_visit(node)

    def generic_visit(self, node: ast.AST) -> None:
        if _TYPE_PARAMS and isinstance(node, _TYPE_PARAMS):
            self.bound.add(node.name)
        super().generic_visit(node)


def _parse(source: str | ast.AST) -> ast.AST:
    return source if isinstance(source, ast.AST) else ast.parse(source)


def free_names(*sources: str | ast.AST) -> set[str] | None:
    """Names the code reads but binds nowhere and that are not builtins, the sources taken as one
    module (as the notebook's cells share one namespace). None when the code's names cannot be
    known statically (`from x import *`, `exec`, a bare `globals()`), so nothing can be said.
    Raises SyntaxError for code that does not parse."""
    uses = _Uses()
    for source in sources:
        uses.visit(_parse(source))
    if uses.opaque:
        return None
    return uses.loads - uses.bound - BUILTIN_NAMES


def bound_names(*sources: str | ast.AST) -> set[str]:
    """Every name the code binds, in any scope."""
    uses = _Uses()
    for source in sources:
        uses.visit(_parse(source))
    return uses.bound


class _ModuleNames(_Bindings):
    """The names a module's run leaves in its namespace: module-level bindings, `global`
    declarations inside functions, walrus targets inside comprehensions."""

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store):
            self.bound.add(node.id)

    def _scope(self, node) -> None:
        self.bound.add(node.name)
        for sub in ast.walk(node):
            if isinstance(sub, ast.Global):
                self.bound.update(sub.names)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scope

    def visit_Lambda(self, node: ast.Lambda) -> None:
        pass

    def _comprehension(self, node) -> None:
        for sub in ast.walk(node):
            if isinstance(sub, ast.NamedExpr) and isinstance(sub.target, ast.Name):
                self.bound.add(sub.target.id)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        # `except E as e` unbinds e when the block ends: only what the block binds stays.
        for stmt in node.body:
            self.visit(stmt)


def module_names(source: str | ast.AST) -> set[str]:
    """The names a cell's run leaves in the namespace (what later cells can use). Code that does
    not parse leaves none."""
    try:
        tree = _parse(source)
    except SyntaxError:
        return set()
    visitor = _ModuleNames()
    visitor.visit(tree)
    return visitor.bound
