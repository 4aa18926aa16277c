"""`sm-magic export` and `sm-magic run`: a notebook's `%%sagemaker_train` cells as bundle
directories that run without Jupyter, and their launch from a shell.

Both go through planner.plan, as the magic does: export turns each cell into the launch request the
magic would (train_line.parse), plans it (every check, before anything is written) and builds its
bundle. An exported bundle is the directory a job runs (train.py verbatim, requirements.txt,
sm_launch.json, sm_entry.py, ...) plus `config.yaml`, the TrainConfig the cell would have used
(accelerate-compatible YAML), and `job.json`, the launch request `sm-magic run` reads back
(request.LaunchRequest.to_json: this code, that config, the rest of the line: backend, inputs,
metric definitions, job name, script arguments) with where the cell came from. A `--git-repo`
cell's bundle holds the repository's files at the commit the export resolved (fetched once, at
export), so running it needs neither the network nor the repository.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..bundle import git_source, safe_copy
from ..bundle.build import GENERATED, SCRIPT_NAME
from ..config.files import read_text
from ..console import progress
from ..errors import SmMagicError, UsageProblem
from ..jobs.job import Job
from ..plan import planner, train_line
from ..plan.request import CodeSource, ConfigSource, JobOptions, LaunchRequest, NotebookContext

CONFIG_FILE = "config.yaml"
JOB_FILE = "job.json"
TRAIN, INCLUDE = "sagemaker_train", "sagemaker_include"
# Cell magics that run their body as Python in the kernel's namespace.
_BODY_RUNS_HERE = frozenset({"time", "capture", INCLUDE})


class ExportError(UsageProblem, ValueError):
    """A notebook or bundle that cannot be exported or run; the message names the cell or file."""


@dataclass
class Cell:
    """A code cell as the kernel would run it: its number (from 1), and for a cell magic the
    magic's name, line and body; for a plain cell the Python IPython turns it into."""

    number: int
    magic: str | None
    line: str
    body: str


MAX_NOTEBOOK_BYTES = 512 * 1024 * 1024  # outputs (images) included; a bound, not a budget


def read_cells(path: Path) -> list[Cell]:
    try:
        import nbformat
    except ImportError:
        raise ExportError("sm-magic export reads notebooks with nbformat: pip install nbformat") from None
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        nb = nbformat.reads(read_text(path, MAX_NOTEBOOK_BYTES), as_version=4)  # a FIFO would block
    except FileNotFoundError:
        raise ExportError(f"no notebook {path}") from None
    except OSError as e:
        raise ExportError(f"cannot read the notebook {path}: {e.strerror or e}") from None
    except Exception as e:
        raise ExportError(f"{path} is not a notebook nbformat can read: {e}") from None
    transform = TransformerManager().transform_cell
    cells = []
    for number, cell in enumerate(nb.cells, start=1):
        if cell.cell_type != "code":
            continue
        try:
            code = transform(cell.source)
        except Exception:
            code = cell.source
        magic = _cell_magic(code)
        cells.append(Cell(number, *magic) if magic else Cell(number, None, "", code))
    return cells


def _cell_magic(code: str) -> tuple[str, str, str] | None:
    """('name', line, body) when IPython turned the cell into one run_cell_magic call (or the
    line form `%sagemaker_train ...` alone in its cell: no body)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return None
    call = tree.body[0].value
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and (call.func.attr, len(call.args)) in (("run_cell_magic", 3), ("run_line_magic", 2))):
        return None
    try:
        name, line, *body = (ast.literal_eval(a) for a in call.args)
    except ValueError:
        return None
    if call.func.attr == "run_line_magic" and name != TRAIN:
        return None
    return name, line, body[0] if body else ""


def expand_line(line: str) -> str:
    """The line as a kernel would pass it to the magic, when that needs no kernel: `{{`, `}}`
    and `$$` unescaped. A line that uses the kernel's variables (`{var}`, `$var`) is refused;
    nothing in the line is evaluated."""
    from IPython.utils.text import DollarFormatter

    try:
        parts = list(DollarFormatter().parse(line))
    except ValueError:
        return line  # IPython leaves a line it cannot format as it is
    fields = [f for _, f, _, _ in parts if f is not None]
    if fields:
        shown = ", ".join("{" + f + "}" for f in fields)
        raise ExportError(f"the line uses IPython expansion ({shown}), which only a running kernel can expand: "
                          "write the value itself in the line")
    return "".join(text for text, _, _, _ in parts)


def _notebook_names(cells: list[Cell], skip: Cell, notebook: str) -> dict[str, str]:
    """What the other cells leave in the kernel's namespace, and where."""
    from ..bundle import names

    found: dict[str, list[int]] = {}
    for cell in cells:
        if cell is skip:
            continue
        if cell.magic is None or cell.magic in _BODY_RUNS_HERE:
            bound = names.module_names(cell.body)
        elif cell.magic == TRAIN:
            try:
                _, flags = train_line.parse(expand_line(cell.line))
                bound = {flags.out} if flags.out else set()
            except SmMagicError:  # its own plan says what is wrong with it
                bound = set()
        else:
            bound = set()
        for name in bound:
            found.setdefault(name, []).append(cell.number)
    return {name: f"defined in cell{'s' if len(n) > 1 else ''} {', '.join(map(str, n[:3]))} of {notebook}"
            for name, n in found.items()}


def _tagged(cells: list[Cell]) -> dict[str, list[str]]:
    tagged: dict[str, list[str]] = {}
    for cell in cells:
        if cell.magic == INCLUDE:
            for tag in cell.line.split():
                tagged.setdefault(tag, []).append(cell.body)
    return tagged


@dataclass
class _CellExport:
    """One `%%sagemaker_train` cell, planned (planner.plan), and the directory its bundle goes to."""

    cell: Cell
    dirname: str
    plan: planner.Plan
    line: str  # the cell's line, credentials in a --git-repo URL removed


def _plan_export(cell: Cell, cells: list[Cell], notebook: Path) -> _CellExport:
    """The cell's request, as the magic would make it in a kernel started beside the notebook,
    planned for export."""
    context = NotebookContext(directory=notebook.parent, tagged_cells=_tagged(cells),
                              names=_notebook_names(cells, cell, notebook.name))
    request, flags = train_line.parse(expand_line(cell.line), cell.body, context)
    if flags.sweep:  # a bundle holds one job's request; exported, a sweep would silently run one job
        raise ExportError("a --sweep cell cannot be exported yet (a bundle runs one job): export a cell per point, "
                          "or run the sweep from the notebook")
    request.code.origin = {"notebook": str(notebook), "cell": cell.number}
    line = f"%%{TRAIN} {cell.line}".rstrip()
    if request.code.git_repo:
        line = git_source.redact(line, request.code.git_repo)  # the line's URL may hold credentials
    p = planner.plan(request, export=True)
    secrets = p.config.secrets()  # config.yaml would carry them, in a directory made to be copied
    if secrets:
        p.close()
        raise ExportError(f"its config holds credentials ({'; '.join(secrets)}), and sm_magic never writes them "
                          "into a bundle: take them out of the config, and let the job get them when it runs (AWS "
                          "access from its IAM role, a token from a secret store such as AWS Secrets Manager)")
    return _CellExport(cell, request.job.name or f"{notebook.stem}-cell-{cell.number}", p, line)


def _write(e: _CellExport, dest: Path) -> None:
    """The cell's bundle in `dest`, with config.yaml (the config it resolved to) and job.json
    (the request that `sm-magic run` launches: this code, that config, the rest of the line)."""
    p = e.plan
    bundle = p.build(dest=dest, name=e.dirname)
    # The inputs and metrics files' contents are in job.json; config.yaml keeps no path that only works here.
    p.config.model_copy(update={"sagemaker_inputs_file": None, "sagemaker_metrics_file": None}).to_yaml(
        dest / CONFIG_FILE)
    job = p.request.job
    exported = LaunchRequest(
        CodeSource(tree=dest, script=bundle.script, origin=p.job.origin),
        JobOptions(name=job.name, backend=job.backend, inputs=list(p.job.inputs.items()),
                   metrics=list(p.job.metric_definitions), simulate_interruptions=p.interruptions),
        ConfigSource(dest / CONFIG_FILE, accelerate_default=False), list(p.job.args))
    data = {**exported.to_json(relative_to=dest),
            "source": {"notebook": p.request.code.origin["notebook"], "cell": e.cell.number, "line": e.line}}
    (dest / JOB_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def export_notebook(notebook: str | os.PathLike, out: str | os.PathLike | None = None,
                    force: bool = False) -> list[Path]:
    """Write one bundle directory per `%%sagemaker_train` cell under `out` (default
    `<notebook stem>_export/` here) and return their paths. Every cell is planned first, as the
    magic plans it (planner.plan): any problem (named by cell) refuses the whole export and nothing is
    written."""
    notebook = Path(notebook).absolute()
    out = Path(out) if out is not None else Path(f"{notebook.stem}_export")
    cells = read_cells(notebook)
    planned: list[_CellExport] = []
    try:
        return _export(planned, cells, notebook, out, force)
    finally:
        for e in planned:  # the git checkouts, whether the export was written or refused
            e.plan.close()


def _export(planned: list[_CellExport], cells: list[Cell], notebook: Path, out: Path, force: bool) -> list[Path]:
    problems = []
    for cell in (c for c in cells if c.magic == TRAIN):
        try:
            planned.append(_plan_export(cell, cells, notebook))
        except SmMagicError as e:
            problems.append(f"cell {cell.number}: {e}")
    if not planned and not problems:
        raise ExportError(f"{notebook.name} has no %%{TRAIN} cells to export")
    names: dict[str, int] = {}
    for each in planned:
        if each.dirname in names:
            problems.append(f"cells {names[each.dirname]} and {each.cell.number} both export to {each.dirname}: "
                            "give one another --name")
        names[each.dirname] = each.cell.number
        if (out / each.dirname).exists() and not force:
            problems.append(f"cell {each.cell.number}: {out / each.dirname} exists (--force replaces it)")
    if problems:
        raise ExportError(f"cannot export {notebook.name}; nothing was written:\n" + "\n".join(problems))

    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".sm_magic-export-", dir=out))
    except OSError as e:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise ExportError(f"cannot write the bundles to {out}: {e.strerror or e}; choose another --out") from None
    try:
        for each in planned:
            _write(each, staging / each.dirname)
        for each in planned:
            if (out / each.dirname).exists():
                shutil.rmtree(out / each.dirname)
            os.rename(staging / each.dirname, out / each.dirname)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return [out / each.dirname for each in planned]


MAX_JSON_BYTES = 1 << 20  # job.json is a few KiB


def read_request(bundle_dir: Path) -> LaunchRequest:
    """The request an exported bundle's job.json holds; ExportError naming the file for anything
    that is not one."""
    path = bundle_dir / JOB_FILE
    again = "export the notebook again"
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        raise ExportError(f"{bundle_dir} is not an exported bundle: it has no {JOB_FILE} "
                          "(`sm-magic export NOTEBOOK.ipynb` writes them)") from None
    except OSError as e:
        raise ExportError(f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > MAX_JSON_BYTES:
        raise ExportError(f"{path} is larger than {MAX_JSON_BYTES // 1024} KiB, which no export writes: {again}")
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ExportError(f"{path} is not UTF-8 text: {again}") from None
    except json.JSONDecodeError as e:
        raise ExportError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise ExportError(f"{path}: nested too deeply to be a file export wrote: {again}") from None
    return LaunchRequest.from_json(value, path)


def _bundle_script(path: Path, script: str) -> str:
    """The entry script's path from job.json: a .py file inside the bundle, never outside it."""
    parts = PurePosixPath(script).parts
    if (not script or PurePosixPath(script).is_absolute() or "\\" in script or ".." in parts
            or not script.endswith(".py")):
        raise ExportError(f"{path}: `code.script` {script!r} is not a .py path inside the bundle: export the "
                          "notebook again")
    return script


def launch_bundle(bundle_dir: str | os.PathLike, *, backend: str | None = None, name: str | None = None,
                  args: Sequence[str] | None = None) -> Job:
    """Launch an exported bundle: the request its job.json holds, planned and launched as any
    other (planner.plan, then Plan.launch), its whole code tree (train.py, included helpers) what runs and
    its config.yaml the config. `backend`, `name` and `args` (the script's arguments) replace the
    exported ones when given."""
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise ExportError(f"no bundle directory {bundle_dir}")
    request = read_request(bundle_dir)
    where = bundle_dir / JOB_FILE
    code = request.code
    if code.tree is not None and code.tree.resolve() != bundle_dir.resolve() or code.git_repo or code.include:
        raise ExportError(f"{where}: the code of an exported bundle is the bundle directory itself (`code.tree` "
                          "\".\", no git repository, nothing more to include): export the notebook again")
    script = _bundle_script(where, code.script or SCRIPT_NAME)
    given = request.config.given
    if given is None:
        given = bundle_dir / CONFIG_FILE
        request.config = ConfigSource(given, request.config.overrides, accelerate_default=False)
    if not isinstance(given, (str, os.PathLike)) or not Path(given).is_file():
        shown = Path(given).name if isinstance(given, (str, os.PathLike)) else CONFIG_FILE
        raise ExportError(f"{bundle_dir} has no {shown}: export the notebook again")
    request.job.backend = backend or request.job.backend
    request.job.name = name or request.job.name
    request.args = request.args if args is None else list(args)
    with tempfile.TemporaryDirectory(prefix="sm_magic-run-") as tmp:
        tree = Path(tmp) / "code"
        safe_copy.copy_tree(bundle_dir, tree, label="the bundle directory", error=ExportError,
                            exclude_top=(*GENERATED, CONFIG_FILE, JOB_FILE), log=progress)
        try:
            code.cell = (tree / script).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            why = "it is not UTF-8 text" if isinstance(e, UnicodeDecodeError) else e.strerror or str(e)
            raise ExportError(f"{bundle_dir}: cannot read the entry script {script} ({why}): export the notebook "
                              "again") from None
        code.tree, code.script = tree, script
        code.origin = {**code.origin, "bundle": str(bundle_dir.absolute())}
        return planner.plan(request).launch()
