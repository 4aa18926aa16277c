"""A launch request, typed: what the `%%sagemaker_train` line, `sm_magic.launch(...)`, the config
form's Launch button and an exported bundle's job.json each ask for, before anything is checked.

`planner.plan(request)` is the one place a request is checked and turned into a launch; this module
only holds requests and reads and writes their JSON form (job.json, a versioned format)."""

from __future__ import annotations

import os
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageProblem
from ..metrics.parser import MetricDefinition

if TYPE_CHECKING:
    from ..config.model import TrainConfig

FORMAT = 2  # job.json's format; bump it when a reader of the old one would misread the new
AGAIN = "export the notebook again"

InputSpec = str | tuple                          # "NAME=URI", or (NAME, URI)
MetricSpec = str | MetricDefinition              # "NAME=REGEX", or a definition


class RequestError(UsageProblem, ValueError):
    """A request's JSON form that cannot be read; the message names the file and the key."""


KEEP_ALIVE_FIELD = "keep_alive_period_in_seconds"


def keep_alive_seconds(minutes, where: str = "--keep-alive") -> int:
    """`--keep-alive MINUTES` (or launch's `keep_alive=`) as the config field's seconds, checked
    against the API's bounds for ResourceConfig.KeepAlivePeriodInSeconds before anything is written."""
    from ..config.model import MAX_KEEP_ALIVE_SECONDS

    most = MAX_KEEP_ALIVE_SECONDS // 60
    try:
        value = float(minutes)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(minutes, bool) or not 0 <= value <= most:  # NaN too
        raise KeepAliveError(f"{where} {minutes}: give the minutes SageMaker keeps the instances for the next job "
                             f"(a warm pool), from 0 to {most} (ResourceConfig.KeepAlivePeriodInSeconds "
                             f"allows 0 to {MAX_KEEP_ALIVE_SECONDS} s)")
    return round(value * 60)


class KeepAliveError(UsageProblem, ValueError):
    """A keep-alive that SageMaker would refuse; the message names the flag and the bounds."""


@dataclass
class CodeSource:
    """What the job runs: the cell's text, a git repository's files, or a code tree (an exported
    bundle's), with included helpers and, optionally, a requirements file of its own."""

    cell: str | None = None          # the script's text; None: the repository's or tree's entry script
    git_repo: str | None = None      # URL
    git_branch: str | None = None
    git_commit: str | None = None    # full or abbreviated SHA
    entry: str | None = None         # the entry script's path in the repository (default train.py)
    tree: Path | None = None         # a code directory bundled whole
    script: str | None = None        # the tree's entry script (default train.py)
    origin: dict = field(default_factory=dict)     # where the code came from, recorded with the job
    include: tuple[str, ...] = ()       # `%%sagemaker_include` tags, .py files, package directories
    requirements: Path | None = None  # replaces the requirements.txt generated from the imports


@dataclass
class JobOptions:
    """How the job runs, besides its config."""

    name: str | None = None          # None: base_job_name plus a timestamp
    backend: str | None = None       # None: the config's (from ec2_instance_type)
    inputs: list[InputSpec] = field(default_factory=list)     # input channels, over the config's inputs file
    metrics: list[MetricSpec] = field(default_factory=list)   # over the config's metrics file
    jobs_dir: str | None = None      # where a local backend keeps its job directories
    # Seconds, as given (plan checks each is a number above 0); for a backend that simulates them.
    simulate_interruptions: tuple[float | str, ...] = ()


@dataclass
class ConfigSource:
    """The TrainConfig the job gets: `given` (a TrainConfig, or a YAML file; None: accelerate's
    SageMaker default config when there is one, else the defaults), with `overrides` (config
    fields, or the flags' names instance_type / instance_count) over it."""

    given: "TrainConfig" | str | os.PathLike | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    accelerate_default: bool = True     # a file is read over accelerate's default config


@dataclass
class NotebookContext:
    """Where a request came from, when a notebook: what its relative paths are relative to (None:
    the working directory), the `%%sagemaker_include` cells it may include (tag -> sources) and the
    names the notebook defines (a Mapping also says where), for the check that a cell reads none it
    does not define. Never written to JSON: a request read back has everything resolved."""

    directory: Path | None = None
    tagged_cells: Mapping[str, Sequence[str]] = field(default_factory=dict)
    names: Container[str] | None = None


@dataclass
class LaunchRequest:
    """One launch as asked for; `planner.plan` checks it."""

    code: CodeSource
    job: JobOptions = field(default_factory=JobOptions)
    config: ConfigSource = field(default_factory=ConfigSource)
    args: Sequence[str] = ()   # the script's own arguments, exactly as given (plan refuses a bare string)
    notebook: NotebookContext = field(default_factory=NotebookContext)

    # -- the keyword arguments of sm_magic.launch ---------------------------------------------------

    @classmethod
    def from_keywords(cls, source: str | None, config=None, args: Sequence[str] = (),
                      **keywords) -> "LaunchRequest":
        """The request `sm_magic.launch(source, config, args, **keywords)` makes: its documented
        keywords, and every other one a config field (checked, with the closest valid name, when
        the config is resolved)."""
        take = keywords.pop
        code = CodeSource(cell=source, git_repo=take("git_repo", None), git_branch=take("git_branch", None),
                          git_commit=take("git_commit", None), entry=take("entry", None),
                          tree=_path(take("tree", None)), script=take("script", None),
                          origin=dict(take("origin", None) or {}), include=_strings(take("include", ())),
                          requirements=_path(take("requirements", None)))
        inputs = take("inputs", ())
        if isinstance(inputs, str):
            inputs = [inputs]
        elif isinstance(inputs, Mapping):
            inputs = list(inputs.items())
        metrics = take("metrics", ())
        interruptions = take("simulate_interruptions", None) or ()
        job = JobOptions(name=take("name", None), backend=take("backend", None), inputs=list(inputs or ()),
                         metrics=[metrics] if isinstance(metrics, (str, MetricDefinition)) else list(metrics or ()),
                         jobs_dir=take("jobs_dir", None),
                         simulate_interruptions=(interruptions,) if isinstance(interruptions, (int, float, str))
                         else tuple(interruptions))
        notebook = NotebookContext(tagged_cells=take("include_cells", None) or {}, names=take("notebook_names", None))
        keep_alive = take("keep_alive", None)  # minutes, as the flag takes them
        if keep_alive is not None:
            keywords[KEEP_ALIVE_FIELD] = keep_alive_seconds(keep_alive, "keep_alive")
        return cls(code, job, ConfigSource(config, overrides=keywords),
                   args if isinstance(args, (str, bytes)) else list(args), notebook)

    # -- JSON (an exported bundle's job.json) -------------------------------------------------------

    def to_json(self, relative_to: Path | None = None) -> dict:
        """The request as a JSON object (empty parts left out). Paths inside `relative_to` are
        written relative to it, as `from_json` reads them back from a file there. The config must
        be a file (write a TrainConfig with `to_yaml` first); the notebook context is not written."""
        given = self.config.given
        if given is not None and not isinstance(given, (str, os.PathLike)):
            raise TypeError("to_json: the config must be a YAML file; write the TrainConfig with to_yaml first")
        code = self.code
        return _pruned({
            "format": FORMAT,
            "code": {"cell": code.cell, "git_repo": code.git_repo, "git_branch": code.git_branch,
                     "git_commit": code.git_commit, "entry": code.entry, "tree": _relative(code.tree, relative_to),
                     "script": code.script, "origin": code.origin, "include": list(code.include),
                     "requirements": _relative(code.requirements, relative_to)},
            "job": {"name": self.job.name, "backend": self.job.backend, "inputs": _inputs_object(self.job.inputs),
                    "metrics": [m.to_api() if isinstance(m, MetricDefinition) else m for m in self.job.metrics],
                    "jobs_dir": self.job.jobs_dir, "simulate_interruptions": list(self.job.simulate_interruptions)},
            "config": {"file": _relative(given, relative_to), "overrides": self.config.overrides,
                       "accelerate_default": None if self.config.accelerate_default else False},
            "args": list(self.args),
        })

    @classmethod
    def from_json(cls, data: Any, where: Path) -> "LaunchRequest":
        """The request a JSON object (as `to_json` writes it) holds, read from file `where`:
        relative paths are relative to its directory. RequestError, naming the file and the key,
        for anything else (another format, a key of the wrong kind, one no request has)."""
        if not isinstance(data, dict):
            raise RequestError(f"{where}: expected a JSON object, found {json_kind(data)}: {AGAIN}")
        if data.get("format") != FORMAT:
            raise RequestError(f"{where}: format {data.get('format')!r}, this sm_magic reads {FORMAT}; {AGAIN}")
        read = _Reader(where, data)
        base = Path(where).parent
        code = CodeSource(**{k: read("code", k) for k in ("cell", "git_repo", "git_branch", "git_commit", "entry",
                                                          "script")},
                          tree=_resolved(read("code", "tree"), base), origin=read("code", "origin") or {},
                          include=tuple(read("code", "include") or ()),
                          requirements=_resolved(read("code", "requirements"), base))
        inputs = read("job", "inputs") or {}
        metrics = [m if isinstance(m, str) else MetricDefinition(m["Name"], m["Regex"])
                   for m in read("job", "metrics") or ()]
        job = JobOptions(name=read("job", "name"), backend=read("job", "backend"), inputs=list(inputs.items()),
                         metrics=metrics, jobs_dir=read("job", "jobs_dir"),
                         simulate_interruptions=tuple(float(x) for x in read("job", "simulate_interruptions") or ()))
        accelerate_default = read("config", "accelerate_default")
        config = ConfigSource(_resolved(read("config", "file"), base), overrides=read("config", "overrides") or {},
                              accelerate_default=True if accelerate_default is None else accelerate_default)
        args = list(read("", "args") or ())
        read.done()
        return cls(code, job, config, args)


# -- helpers ------------------------------------------------------------------------------------

def _path(value) -> Path | None:
    return None if value is None else Path(value)


def _strings(value) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(str(v) for v in value or ())


def _pruned(data: dict) -> dict:
    """`data` without None, empty values and sections left empty."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in ("code", "job", "config"):
            value = {k: v for k, v in value.items() if v is not None and v != [] and v != {}}
        if value is not None and value != [] and value != {}:
            out[key] = value
    return out


def _relative(path, base: Path | None) -> str | None:
    if path is None:
        return None
    path = Path(path)
    if base is not None:
        try:
            return Path(path).absolute().relative_to(Path(base).absolute()).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def _resolved(text: str | None, base: Path) -> Path | None:
    if text is None:
        return None
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def _inputs_object(inputs: Sequence[InputSpec]) -> dict:
    """Input channels as {NAME: URI}, a "NAME=URI" split at its first = as the flag's parser does."""
    out = {}
    for spec in inputs:
        if isinstance(spec, str) and "=" not in spec:
            raise ValueError(f"input {spec!r} is not NAME=URI")
        channel, uri = spec.split("=", 1) if isinstance(spec, str) else spec
        out[str(channel)] = os.fspath(uri) if isinstance(uri, os.PathLike) else uri
    return out


def json_kind(value) -> str:
    return {list: "a list", str: "a string", bool: "true or false", type(None): "null",
            dict: "an object"}.get(type(value), "a number")


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _optional_str(v) -> bool:
    return v is None or isinstance(v, str)


def _str_list(v) -> bool:
    return v is None or isinstance(v, list) and all(isinstance(x, str) for x in v)


def _metric(m) -> bool:
    return isinstance(m, str) or (isinstance(m, dict) and set(m) == {"Name", "Regex"}
                                  and all(isinstance(x, str) for x in m.values()))


_TEXT = (_optional_str, "a string or null")
# section -> key -> (check, what it should be); section "" holds the top-level keys.
_SCHEMA: dict[str, dict[str, tuple[Callable[[Any], bool], str]]] = {
    "code": {"cell": _TEXT, "git_repo": _TEXT, "git_branch": _TEXT, "git_commit": _TEXT, "entry": _TEXT,
             "tree": _TEXT, "script": _TEXT, "requirements": _TEXT,
             "origin": (lambda v: v is None or isinstance(v, dict), "an object"),
             "include": (_str_list, "a list of strings")},
    "job": {"name": (_optional_str, "a job name (a string) or null"),
            "backend": (_optional_str, "a backend name (a string) or null"),
            "inputs": (lambda v: v is None or isinstance(v, dict) and all(isinstance(u, str) for u in v.values()),
                       "an object of channel: URI strings"),
            "metrics": (lambda v: v is None or isinstance(v, list) and all(_metric(m) for m in v),
                        'a list of {"Name": ..., "Regex": ...} objects (or NAME=REGEX strings)'),
            "jobs_dir": _TEXT,
            "simulate_interruptions": (lambda v: v is None or isinstance(v, list) and all(_is_number(x) for x in v),
                                       "a list of numbers of seconds")},
    "config": {"file": _TEXT, "overrides": (lambda v: v is None or isinstance(v, dict), "an object of config fields"),
               "accelerate_default": (lambda v: v is None or isinstance(v, bool), "true or false")},
    "": {"args": (_str_list, "a list of strings")},
}
_IGNORED = {"format", "source"}  # the format, checked first; where an export came from, for people to read


class _Reader:
    """Reads keys of a request's JSON object, each checked against _SCHEMA; `done()` refuses keys
    that no request has (a misspelt one would otherwise be ignored)."""

    def __init__(self, where: Path, data: dict):
        self.where, self.data = where, data
        for section in ("code", "job", "config"):
            if not isinstance(data.get(section, {}), dict):
                raise RequestError(f"{where}: `{section}` should be an object, found {json_kind(data[section])}: {AGAIN}")

    def __call__(self, section: str, key: str):
        value = (self.data.get(section) or {} if section else self.data).get(key)
        ok, what = _SCHEMA[section][key]
        if not ok(value):
            shown = f"{section}.{key}" if section else key
            raise RequestError(f"{self.where}: `{shown}` should be {what}, found {json_kind(value)}: {AGAIN}")
        return value

    def done(self) -> None:
        unknown = [k for k in self.data if k not in _SCHEMA and k not in _SCHEMA[""] and k not in _IGNORED]
        for section in ("code", "job", "config"):
            unknown += [f"{section}.{k}" for k in self.data.get(section) or {} if k not in _SCHEMA[section]]
        if unknown:
            raise RequestError(f"{self.where}: no request has {', '.join(f'`{k}`' for k in unknown)}: {AGAIN}")
