"""`sm-magic export` and `sm-magic run`: a notebook's `%%sagemaker_train` cells as bundle
directories that run without Jupyter, and their launch from a shell.

An exported bundle is the directory a job runs (train.py verbatim, requirements.txt,
sm_launch.json, sm_entry.py, ...) plus `config.yaml`, the TrainConfig the cell would have used
(accelerate-compatible YAML), and `job.json`, the rest of the cell's line (backend, inputs,
metric definitions, job name, includes) and where the cell came from. A `--git-repo` cell's
bundle holds the repository's files at the commit the export resolved (fetched once, at export),
so running it needs neither the network nor the repository.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Optional, Sequence

from .errors import UsageProblem
from . import api, git_source, includes, safe_copy, software, train_line
from . import requirements as reqs
from .bundle import GENERATED, SCRIPT_NAME, build_bundle, check_source
from .config import resolve_config
from .job import Job
from .metrics import MetricDefinition

CONFIG_FILE = "config.yaml"
JOB_FILE = "job.json"
FORMAT = 1
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
    magic: Optional[str]
    line: str
    body: str


def read_cells(path: Path) -> list[Cell]:
    try:
        import nbformat
    except ImportError:
        raise ExportError("sm-magic export reads notebooks with nbformat: pip install nbformat") from None
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        nb = nbformat.read(str(path), as_version=4)
    except FileNotFoundError:
        raise ExportError(f"no notebook {path}") from None
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


def _cell_magic(code: str) -> Optional[tuple[str, str, str]]:
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
    from . import names

    found: dict[str, list[int]] = {}
    for cell in cells:
        if cell is skip:
            continue
        if cell.magic is None or cell.magic in _BODY_RUNS_HERE:
            bound = names.module_names(cell.body)
        elif cell.magic == TRAIN:
            try:
                opts, _ = train_line.parse(expand_line(cell.line))
                bound = {opts.out} if opts.out else set()
            except (ExportError, train_line.LineError):
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


def _local_path(uri: str, base: Path) -> str:
    """A relative local input path made absolute from the notebook's directory (the kernel's
    working directory); URIs with a scheme other than file:// are left alone."""
    if "://" in uri and not uri.startswith("file://"):
        return uri
    path = Path(uri.removeprefix("file://")).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


@dataclass
class _Planned:
    cell: Cell
    dirname: str
    source: Optional[str]  # None: the git checkout's entry script
    args: list
    config: object
    job: dict
    included: includes.Included
    checkout: Optional[git_source.Checkout] = None  # a --git-repo cell's code, until close()
    entry: str = SCRIPT_NAME
    requirements: Optional[Path] = None  # --requirements, or requirements.txt beside the notebook

    def origin(self) -> dict:
        """What sm_launch.json records about where the code came from."""
        git = self.checkout.origin() if self.checkout is not None else {}
        return {**git, "notebook": self.job["source"]["notebook"], "cell": self.cell.number}

    def close(self) -> None:
        if self.checkout is not None:
            self.checkout.cleanup()


def _plan_cell(cell: Cell, cells: list[Cell], notebook: Path) -> _Planned:
    base = notebook.parent
    opts, script_args = train_line.parse(expand_line(cell.line))
    try:
        git_source.check_options(opts.git_repo, opts.git_branch, opts.git_commit, opts.entry)
    except git_source.GitSourceError as e:
        raise ExportError(str(e)) from None
    # As at launch: under --git-repo a blank cell (or the line form) runs the repository's entry
    # script, and a cell body replaces it.
    source = None if opts.git_repo and not cell.body.strip() else cell.body
    config_file = opts.config
    if config_file and not Path(config_file).expanduser().is_absolute():
        config_file = base / config_file
    cfg = resolve_config(config_file=config_file, overrides={"instance_type": opts.instance_type,
                                                             "instance_count": opts.instance_count})
    for key in ("sagemaker_inputs_file", "sagemaker_metrics_file"):
        value = getattr(cfg, key)
        if value and not Path(value).expanduser().is_absolute():
            cfg = cfg.model_copy(update={key: str(base / value)})
    metrics = api.parse_metrics(opts.metrics, cfg)
    inputs = {k: _local_path(v, base) for k, v in api.parse_inputs(opts.inputs, cfg, base=base).items()}
    # Their contents now live in job.json; config.yaml keeps no paths that only work here.
    cfg = cfg.model_copy(update={"sagemaker_inputs_file": None, "sagemaker_metrics_file": None})
    if opts.name:
        api.check_job_name(opts.name)
    if source is not None:
        check_source(source)
    tagged = _tagged(cells)
    included = includes.resolve(opts.include, tagged, base_dir=base)
    if source is not None:
        includes.check_names(source, included, _notebook_names(cells, cell, notebook.name), tagged)
    line = f"%%{TRAIN} {cell.line}".rstrip()
    if opts.git_repo:
        line = git_source.redact(line, opts.git_repo)  # the line's URL may hold credentials
    job = {"format": FORMAT, "name": opts.name, "backend": opts.backend, "inputs": inputs,
           "metric_definitions": [m.to_api() for m in metrics],
           "instance_type": opts.instance_type, "instance_count": opts.instance_count,
           "simulate_interruptions": opts.simulate_interruptions, "include": opts.include,
           "source": {"notebook": str(notebook), "cell": cell.number, "line": line}}
    # Last, as at launch: fetch the repository (api.plan's own path: the checkout, its clash and
    # entry checks). The bundle gets the files at the commit resolved now, recorded in full.
    checkout = api.fetch_code(source, opts.git_repo, opts.git_branch, opts.git_commit, opts.entry)
    if checkout is not None:
        job["git"] = checkout.origin()["git"]
    requirements = train_line.launch_kwargs(opts, script_args, base).get("requirements")
    if requirements is not None:
        try:
            reqs.from_file(requirements)
        except reqs.RequirementsError as e:
            raise ExportError(str(e)) from None
    return _Planned(cell, opts.name or f"{notebook.stem}-cell-{cell.number}", source, script_args, cfg, job,
                    included, checkout, git_source.check_entry_path(opts.entry) if opts.entry else SCRIPT_NAME,
                    requirements)


def export_notebook(notebook: str | os.PathLike, out: str | os.PathLike | None = None,
                    force: bool = False) -> list[Path]:
    """Write one bundle directory per `%%sagemaker_train` cell under `out` (default
    `<notebook stem>_export/` here) and return their paths. Every cell is checked first: any
    problem (named by cell) refuses the whole export and nothing is written."""
    notebook = Path(notebook).absolute()
    out = Path(out) if out is not None else Path(f"{notebook.stem}_export")
    cells = read_cells(notebook)
    planned: list[_Planned] = []
    try:
        return _export(planned, cells, notebook, out, force)
    finally:
        for p in planned:  # the git checkouts, whether the export was written or refused
            p.close()


def _export(planned: list[_Planned], cells: list[Cell], notebook: Path, out: Path, force: bool) -> list[Path]:
    problems = []
    for cell in (c for c in cells if c.magic == TRAIN):
        try:
            planned.append(_plan_cell(cell, cells, notebook))
        except UsageProblem as e:
            problems.append(f"cell {cell.number}: {e}")
    if not planned and not problems:
        raise ExportError(f"{notebook.name} has no %%{TRAIN} cells to export")
    names: dict[str, int] = {}
    for p in planned:
        if p.dirname in names:
            problems.append(f"cells {names[p.dirname]} and {p.cell.number} both export to {p.dirname}: "
                            "give one another --name")
        names[p.dirname] = p.cell.number
        if (out / p.dirname).exists() and not force:
            problems.append(f"cell {p.cell.number}: {out / p.dirname} exists (--force replaces it)")
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
        for p in planned:
            tree = p.checkout.path if p.checkout is not None else None
            with includes.staged(p.source, p.included, tree=tree, script=p.entry) as code:
                lines = software.resolve(None, p.config, code, p.requirements).requirements
                build_bundle(code.source, p.config, p.args, name=p.dirname, dest=staging / p.dirname,
                             requirements=lines,
                             metric_definitions=[MetricDefinition(d["Name"], d["Regex"])
                                                 for d in p.job["metric_definitions"]],
                             inputs=p.job["inputs"], tree=code.tree, script=code.script, origin=p.origin())
            p.config.to_yaml(staging / p.dirname / CONFIG_FILE)
            (staging / p.dirname / JOB_FILE).write_text(json.dumps(p.job, indent=2) + "\n", encoding="utf-8")
        for p in planned:
            if (out / p.dirname).exists():
                shutil.rmtree(out / p.dirname)
            os.rename(staging / p.dirname, out / p.dirname)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return [out / p.dirname for p in planned]


MAX_JSON_BYTES = 1 << 20  # job.json and sm_launch.json are a few KiB


def _read_json(path: Path) -> dict:
    """A bundle's JSON file as an object; ExportError naming the file for anything else."""
    again = "export the notebook again"
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        raise ExportError(f"{path.parent} is not an exported bundle: it has no {path.name} "
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
    if not isinstance(value, dict):
        raise ExportError(f"{path}: expected a JSON object, found {_json_kind(value)}: {again}")
    return value


def _json_kind(value) -> str:
    return {list: "a list", str: "a string", bool: "true or false", type(None): "null",
            dict: "an object"}.get(type(value), "a number")


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# What `sm-magic run` reads from a bundle's files: key -> (check, what it should be).
_JOB_KEYS = {
    "name": (lambda v: v is None or isinstance(v, str), "a job name (a string) or null"),
    "backend": (lambda v: v is None or isinstance(v, str), "a backend name (a string) or null"),
    "inputs": (lambda v: isinstance(v, dict) and all(isinstance(u, str) for u in v.values()),
               "an object of channel: URI strings"),
    "metric_definitions": (lambda v: isinstance(v, list) and all(
        isinstance(d, dict) and isinstance(d.get("Name"), str) and isinstance(d.get("Regex"), str) for d in v),
        'a list of {"Name": ..., "Regex": ...} objects'),
    "simulate_interruptions": (lambda v: v is None or isinstance(v, list) and all(_is_number(x) for x in v),
                               "a list of numbers of seconds"),
}
_SPEC_KEYS = {
    "script": (lambda v: isinstance(v, str), "the entry script's path (a string)"),
    "args": (lambda v: isinstance(v, list) and all(isinstance(a, str) for a in v), "a list of strings"),
    "origin": (lambda v: isinstance(v, dict), "an object"),
}


def _check_keys(path: Path, data: dict, keys: dict) -> None:
    for key, (ok, what) in keys.items():
        if key in data and not ok(data[key]):
            raise ExportError(f"{path}: `{key}` should be {what}, found {_json_kind(data[key])}: "
                              "export the notebook again")


def _bundle_script(path: Path, script: str) -> str:
    """The entry script's path from sm_launch.json: a .py file inside the bundle, never outside it."""
    parts = PurePosixPath(script).parts
    if (not script or PurePosixPath(script).is_absolute() or "\\" in script or ".." in parts
            or not script.endswith(".py")):
        raise ExportError(f"{path}: `script` {script!r} is not a .py path inside the bundle: export the notebook "
                          "again")
    return script


def launch_bundle(bundle_dir: str | os.PathLike, *, backend: Optional[str] = None, name: Optional[str] = None,
                  args: Optional[Sequence[str]] = None) -> Job:
    """Launch an exported bundle with the config and line it was exported with: its whole code
    tree (train.py, included helpers) is what runs. `backend`, `name` and `args` (the script's
    arguments) replace the exported ones when given."""
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise ExportError(f"no bundle directory {bundle_dir}")
    job, spec = _read_json(bundle_dir / JOB_FILE), _read_json(bundle_dir / "sm_launch.json")
    _check_keys(bundle_dir / JOB_FILE, job, _JOB_KEYS)
    _check_keys(bundle_dir / "sm_launch.json", spec, _SPEC_KEYS)
    script = _bundle_script(bundle_dir / "sm_launch.json", spec.get("script", SCRIPT_NAME))
    if job.get("format") != FORMAT:
        raise ExportError(f"{bundle_dir / JOB_FILE}: format {job.get('format')!r}, this sm_magic reads {FORMAT}; "
                          "export the notebook again")
    config = bundle_dir / CONFIG_FILE
    if not config.is_file():
        raise ExportError(f"{bundle_dir} has no {CONFIG_FILE}: export the notebook again")
    with tempfile.TemporaryDirectory(prefix="sm_magic-run-") as tmp:
        tree = Path(tmp) / "code"
        safe_copy.copy_tree(bundle_dir, tree, label="the bundle directory", error=ExportError,
                            exclude_top=(*GENERATED, CONFIG_FILE, JOB_FILE), log=safe_copy.progress)
        try:
            source = (tree / script).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            why = "it is not UTF-8 text" if isinstance(e, UnicodeDecodeError) else e.strerror or str(e)
            raise ExportError(f"{bundle_dir}: cannot read the entry script {script} ({why}): export the notebook "
                              "again") from None
        origin = {**spec.get("origin", {}), "bundle": str(bundle_dir.absolute())}
        return api.launch(source, config=resolve_config(config_file=config, use_accelerate_default=False),
                          args=list(spec.get("args", [])) if args is None else list(args),
                          name=name or job.get("name"), backend=backend or job.get("backend"),
                          inputs=list(job.get("inputs", {}).items()),
                          metrics=[MetricDefinition(d["Name"], d["Regex"]) for d in job.get("metric_definitions", [])],
                          simulate_interruptions=job.get("simulate_interruptions") or (),
                          tree=tree, script=script, origin=origin)
