"""`--include`: helper code from the notebook, carried into the job, and the check that a cell
uses no name defined only in the notebook.

A helper cell is marked `%%sagemaker_include TAG`; `--include TAG` on a `%%sagemaker_train` line
takes the cells of that tag (in notebook order) into the bundle as `sm_included.py`. The bundle's
entry script is then `sm_main.py`, which runs `sm_included.py` and then `train.py` in one
namespace, as the notebook ran those cells: `train.py` stays the cell verbatim, so a traceback's
line numbers are the cell's own, and a helper may use names the training cell defines.
`--include path/to/helpers.py` (or a package directory) is copied beside `train.py`, importable
by its name (`import helpers`). Trees are copied by safe_copy: in a package directory a link out
of it, a broken link or a special file is skipped with a warning, files that may hold secrets
and those its .smignore names are left out.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..console import progress
from . import names as _names
from . import safe_copy
from .build import GENERATED, SCRIPT_NAME, BundleCode, BundleError

INCLUDED_NAME = "sm_included.py"   # the tagged cells, in notebook order
MAIN_NAME = "sm_main.py"           # the entry script when cells are included
TAG_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_MAIN_SOURCE = '''\
"""Written by sm_magic for `--include`: runs the included notebook cells ({included}), then the
training cell ({script}), in one namespace, as the notebook ran them. Each file keeps its own
line numbers, so tracebacks point at the cells' lines."""


def _sm_main(files):
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    paths = [os.path.join(here, name) for name in files]
    codes = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            codes.append(compile(f.read(), path, "exec", dont_inherit=True))
    script_dir = os.path.dirname(paths[-1])
    if script_dir != here:
        sys.path.insert(0, script_dir)
    sys.argv[0] = paths[-1]
    namespace = globals()
    del namespace["_sm_main"]
    for code in codes:
        exec(code, namespace)


_sm_main({files!r})
'''


class IncludeError(BundleError):
    """An --include that cannot be honoured, or a cell that needs one; the message says what to do."""


@dataclass
class Included:
    """What --include brings into a bundle: tagged cells, in order, and files or package directories."""

    cells: list[tuple[str, str]] = field(default_factory=list)  # (tag, cell source)
    files: list[Path] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.cells or self.files)


def check_tag(tag: str) -> str:
    if not TAG_RE.match(tag) or tag.endswith(".py"):
        raise IncludeError(f"{tag!r} is not a tag: use letters, digits, _ . - (starting with a letter or _), "
                           "not ending in .py (`--include FILE.py` names a file)")
    return tag


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def resolve(specs: Iterable[str], tagged: Mapping[str, Sequence[str]] | None = None,
            base_dir: Path | None = None) -> Included:
    """The --include values as code: each is a tag of `%%sagemaker_include` cells in `tagged`
    (tag -> cell sources, in order), else a .py file or package directory (relative to
    `base_dir`, default the current directory). Refused with a clear message: an unknown tag or
    missing file, a cell that is not plain Python, a file that cannot be imported by its name or
    that would replace a file every bundle has."""
    tagged = tagged or {}
    included = Included()
    seen_files: dict[str, str] = {}
    for spec in specs:
        spec = str(spec)
        if not _is_path(spec) and spec in tagged:
            for source in tagged[spec]:
                check_cell(spec, source)
                included.cells.append((spec, source))
            continue
        path = Path(spec).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if not path.exists():
            if _is_path(spec):
                raise IncludeError(f"--include {spec}: no such file ({path.absolute()})")
            known = f" (tags seen: {', '.join(sorted(tagged))})" if tagged else ""
            raise IncludeError(f"--include {spec}: no cell is marked `%%sagemaker_include {spec}`{known} and there "
                               f"is no file {spec}; run the helper cell (marked `%%sagemaker_include {spec}`) first")
        if path.is_file() and path.suffix != ".py":
            raise IncludeError(f"--include {spec}: a file to include must be Python (.py)")
        module = path.stem if path.is_file() else path.name
        if not module.isidentifier():
            raise IncludeError(f"--include {spec}: {module!r} cannot be imported by that name; rename it "
                               "(letters, digits and _)")
        reserved = {SCRIPT_NAME, INCLUDED_NAME, MAIN_NAME, "requirements.txt", *GENERATED}
        if path.name in reserved:
            raise IncludeError(f"--include {spec}: every bundle has its own {path.name}; rename the file")
        if path.name in seen_files:
            raise IncludeError(f"--include {spec} and --include {seen_files[path.name]} would both be "
                               f"{path.name} in the bundle; rename one")
        seen_files[path.name] = spec
        included.files.append(path)
    return included


def check_cell(tag: str, source: str) -> None:
    try:
        compile(source, f"<%%sagemaker_include {tag}>", "exec", dont_inherit=True)
    except SyntaxError as e:
        raise IncludeError(f"the `%%sagemaker_include {tag}` cell is not plain Python (line {e.lineno}: {e.msg}); "
                           "its code goes into the job as sm_included.py, so it cannot use magics or ! commands") from None


def check_names(source: str, included: Included, notebook_names: Container[str] | None = None,
                tagged: Mapping[str, Sequence[str]] | None = None) -> None:
    """Refuse a cell that reads a name it never defines (nor do its included cells) when the
    notebook defines that name elsewhere: in the job it would be a NameError. `notebook_names`
    holds the notebook's names (a Mapping gives, for each, where it is defined); names of
    `%%sagemaker_include` cells in `tagged` that are not included are named with their tag."""
    tagged = tagged or {}
    try:
        free = _names.free_names(*(code for _, code in included.cells), source)
    except SyntaxError:
        return  # the cell's own syntax check says where
    if not free:
        return
    in_tag: dict[str, list[str]] = {}
    for tag, sources in tagged.items():
        bound = set().union(*(_names.module_names(s) for s in sources)) if sources else set()
        for name in free & bound:
            in_tag.setdefault(name, []).append(tag)
    notebook_names = notebook_names if notebook_names is not None else ()
    found = sorted(n for n in free if n in in_tag or n in notebook_names)
    if not found:
        return
    where = []
    for name in found:
        if name in in_tag:
            tags = in_tag[name]
            if len(tags) == 1:
                where.append(f"{name} (in the `%%sagemaker_include {tags[0]}` cell: add --include {tags[0]})")
            else:
                where.append(f"{name} (in the `%%sagemaker_include` cells tagged {', '.join(tags)}: "
                             "add --include with one of those tags)")
        else:
            place = notebook_names.get(name) if isinstance(notebook_names, Mapping) else None
            where.append(f"{name} ({place or 'defined in the notebook'})")
    raise IncludeError(
        "this cell uses names that only the notebook defines, not this cell: " + ", ".join(where) + ".\n"
        "The job runs the cell on its own, without the notebook's variables. Mark the cell that defines "
        "them with `%%sagemaker_include TAG` (run it again) and add `--include TAG` to this line, or move "
        "the definitions (and imports) into this cell. Nothing was written or launched.")


@dataclass
class Code(BundleCode):
    """The code build_bundle takes (BundleCode), with the texts whose imports the requirements
    come from and the module names the code carries; `cleanup()` removes the temporary tree
    `stage` made."""

    _tmp: Path | None = None
    texts: list = field(default_factory=list)
    bundled: list = field(default_factory=list)

    def own_requirements(self) -> Path | None:
        """The code tree's own requirements.txt (a git repository's), if it has one."""
        path = self.tree / "requirements.txt" if self.tree is not None else None
        return path if path is not None and path.is_file() else None

    def cleanup(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


def stage(source: str | None, included: Included | None, tree: Path | None = None,
          script: str = SCRIPT_NAME) -> Code:
    """The code to bundle with the included cells and files added: a temporary tree (removed by
    `cleanup()`) holding `tree`'s files, the script, the files, and with tagged cells
    sm_included.py plus the sm_main.py entry. Without includes, the code as given, its tree walked
    first (safe_copy.plan_tree): a link out of it is refused before any of its files is read."""
    if tree is not None:
        safe_copy.plan_tree(Path(tree), label="the code", error=BundleError)
    if not included:
        entry = Path(tree) / script if tree is not None else None
        text = source if source is not None else entry.read_text(encoding="utf-8") if entry and entry.is_file() else ""
        return Code(source, tree, script, texts=[text])
    tmp = Path(tempfile.mkdtemp(prefix="sm_magic-include-"))
    try:
        return _stage(source, included, tree, script, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def staged(source: str | None, included: Included | None, tree: Path | None = None,
           script: str = SCRIPT_NAME) -> Iterator[Code]:
    """`stage` for a with-block: the temporary tree is removed when the block ends."""
    code = stage(source, included, tree, script)
    try:
        yield code
    finally:
        code.cleanup()


def _stage(source: str | None, included: Included, tree: Path | None, script: str, tmp: Path) -> Code:
    root = tmp / "code"
    left_out: list[str] = []
    if tree is not None:
        left_out += safe_copy.copy_tree(Path(tree), root, label="the code", error=BundleError).left_out
    else:
        root.mkdir()
    if source is None:
        source = (root / script).read_text(encoding="utf-8")
    (root / script).parent.mkdir(parents=True, exist_ok=True)
    (root / script).write_text(source, encoding="utf-8")
    texts, modules = [source], []
    for path in included.files:
        target = root / path.name
        if os.path.lexists(target):
            raise IncludeError(f"--include {path}: the code already has a {path.name}; rename one")
        if path.is_dir():
            # The user asked for this directory: what cannot be bundled in it is skipped, not refused.
            plan = safe_copy.copy_tree(path, target, label=path.name, skip_unsafe=True,
                                       shown_prefix=f"{path.name}/", error=IncludeError,
                                       ignore_names=(".git", "__pycache__", "*.pyc"))
            if plan.skipped:
                progress(safe_copy.skipped_note(f"--include {path}", plan.skipped))
            left_out += plan.left_out
            texts += [p.read_text(encoding="utf-8", errors="replace") for p in sorted(target.rglob("*.py"))]
        else:
            safe_copy.copy_file(path, target, error=IncludeError)
            texts.append(target.read_text(encoding="utf-8", errors="replace"))  # read for its imports only
        modules.append(path.stem if path.is_file() else path.name)
    entry, entry_source = script, source
    if included.cells:
        for name in (INCLUDED_NAME, MAIN_NAME):
            if (root / name).exists():
                raise IncludeError(f"the code already has a {name}, which --include TAG writes; rename it")
        parts = []
        for tag, cell in included.cells:
            parts.append(f"# --- %%sagemaker_include {tag} ---\n{cell.rstrip()}\n")
            texts.append(cell)
        (root / INCLUDED_NAME).write_text("\n".join(parts), encoding="utf-8")
        entry = MAIN_NAME
        entry_source = _MAIN_SOURCE.format(included=INCLUDED_NAME, script=script, files=[INCLUDED_NAME, script])
    if left_out:
        progress(safe_copy.left_out_note(left_out))
    return Code(entry_source, root, entry, tmp, texts=texts, bundled=modules)


class TaggedCells:
    """The `%%sagemaker_include` cells a kernel has run: tag -> sources, in first-run order.
    A cell run again replaces its earlier text (a cell is known by its id where the frontend
    sends one, else by its text)."""

    def __init__(self):
        self._cells: dict[str, dict[str, str]] = {}

    def record(self, tags: Iterable[str], source: str, cell_id: str | None = None) -> None:
        tags = [check_tag(t) for t in tags]
        for tag in tags:
            self._cells.setdefault(tag, {})[cell_id or source] = source  # a re-run keeps its place
        if cell_id:  # a cell whose tag changed leaves its old tags
            for tag, cells in self._cells.items():
                if tag not in tags:
                    cells.pop(cell_id, None)

    def as_dict(self) -> dict[str, list[str]]:
        return {tag: list(cells.values()) for tag, cells in self._cells.items() if cells}


class NamespaceNames(Mapping):
    """A kernel's user names, for `check_names`: a live view of `namespace` less `hidden`; for
    a name, where it was defined: the last input in `history` (IPython's `In`) binding it."""

    def __init__(self, namespace: Mapping, hidden: Container[str] = (), history: Sequence[str] = (),
                 transform: Callable[[str], str] | None = None):
        self.namespace, self.hidden, self.history = namespace, hidden, history
        self.transform = transform or (lambda s: s)

    def __contains__(self, name) -> bool:
        return name in self.namespace and name not in self.hidden

    def __getitem__(self, name: str) -> str:
        if name not in self:
            raise KeyError(name)
        for n in range(len(self.history) - 1, 0, -1):
            try:
                code = self.transform(self.history[n])
            except Exception:
                continue
            if name in _names.module_names(code):
                return f"defined in the notebook, In [{n}]"
        return "defined in the notebook"

    def __iter__(self):
        return (k for k in list(self.namespace) if k not in self.hidden)

    def __len__(self) -> int:
        return sum(1 for _ in self)
