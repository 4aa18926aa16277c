"""requirements.txt for a job bundle: what the training container installs before the script runs.

The policy (docs/backends.md, "Requirements"):
- A requirements file of the user's wins: `--requirements FILE`, else the code tree's own
  requirements.txt (a git repository's), else a requirements.txt beside the notebook. It is used
  as written, with `accelerate` added when it does not name it (the entry command runs it).
- Otherwise the file is made from the code's imports:
  - `accelerate`, the launcher (see below);
  - a package the training image provides (torch, transformers, numpy, ...) by name only, so the
    image's own build stays, and pip installs one only where the image lacks it;
  - any other installed package, pinned to the notebook's version;
  - a module that is not installed here is not listed (most likely a file beside the notebook).
- The accelerate sm_magic adds (to a generated file, or to a user's file that does not name it)
  is the notebook's version where it installs in the image: the script ran locally with it. Where
  it does not (its Requires-Python against the image's Python, or what it requires of torch
  against the torch the image fixes), it is the newest release of the same major version, no
  newer than the notebook's, that does (`job_launcher`), and `--dry-run`, the job's record and a
  comment line in requirements.txt say so, e.g. "accelerate 1.15.0 in the job: the notebook's
  1.16.0 needs Python >= 3.11, the image has 3.10". So the notebook's accelerate never decides the
  image: an image is passed over only when no release of that major installs there, or when
  another pin does not. The facts of older releases come with the package (accelerate_releases.json,
  from PyPI's metadata), so this works offline; the notebook's own release is read from its
  installed metadata, which may be newer than the table. The bundle's launch config
  (accelerate_config.yaml) and the entry command's flags use only what accelerate 1.0 knows, so
  every 1.x release reads them.
- A pin of the user's is used as written: every pin of a package installed here at that version,
  and every pin of an accelerate release in the table, is checked against the image before
  anything is uploaded (`problems`): its Requires-Python against the image's Python, and what it
  requires of packages whose version the image fixes (torch, transformers) against those. One
  that does not install is refused, naming the pin, the image and the fix.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from ..config.files import read_text
from ..errors import UsageProblem
from . import pip_lines

LAUNCHER = "accelerate"
# What the training images carry (the Hugging Face DLCs install transformers, datasets and
# tokenizers on PyTorch; both kinds carry the scientific stack).
TORCH_STACK = frozenset({"torch", "torchvision", "torchaudio"})
SCIENTIFIC_STACK = frozenset({"numpy", "scipy", "pandas", "scikit-learn", "pillow"})
HUGGING_FACE_STACK = frozenset({"transformers", "datasets", "tokenizers", "huggingface-hub", "safetensors",
                                "evaluate"})
HF_IMAGE_PROVIDES = TORCH_STACK | SCIENTIFIC_STACK | HUGGING_FACE_STACK
PYTORCH_IMAGE_PROVIDES = TORCH_STACK | SCIENTIFIC_STACK
PROVIDED_NOTE = "# provided by the training image (its own version is kept): "
NOT_LISTED_NOTE = "# imported but not installed here, so not listed: "
LAUNCHER_NOTE = "# added by sm_magic: the entry command runs accelerate"
RELEASES_FILE = Path(__file__).with_name("accelerate_releases.json")


class RequirementsError(UsageProblem, ValueError):
    """A requirements file that cannot be used; the message names the file and the line."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@lru_cache(maxsize=1)
def _distributions() -> Mapping[str, list[str]]:
    return md.packages_distributions()


def installed_version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def launcher_pin() -> str:
    """The notebook's accelerate, pinned."""
    return job_launcher(None).pin


# -- which accelerate a job installs --------------------------------------------------------------

def _contains(specifier: str, version: str) -> bool:
    """Whether `version` meets `specifier` ("" or one that cannot be read: nothing known against it)."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion

    try:
        return not specifier or SpecifierSet(specifier).contains(version, prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return True


def _spoken(what: str, specifier: str) -> str:
    """`Python >= 3.11` for ">=3.11.0", `torch >= 2.6.0` for ">=2.6.0"."""
    from packaging.specifiers import SpecifierSet

    def version(v: str) -> str:
        return v.removesuffix(".0") if what == "Python" and v.count(".") == 2 else v

    return f"{what} " + ", ".join(f"{s.operator} {version(s.version)}" for s in sorted(SpecifierSet(specifier), key=str))


@dataclass(frozen=True)
class Release:
    """One accelerate release and what it needs of the image (as in its PyPI metadata)."""

    version: str
    requires_python: str = ""  # its Requires-Python ("" when none)
    requires_torch: str = ""   # what its Requires-Dist asks of torch ("" when nothing)

    def misfits(self, python: tuple[int, int] | None, versions: Mapping[str, str]) -> list[tuple[str, str, str]]:
        """(what, needs, has) for each thing an image fixes that this release does not install with."""
        found = []
        if python and not _contains(self.requires_python, f"{python[0]}.{python[1]}"):
            found.append(("Python", self.requires_python, f"{python[0]}.{python[1]}"))
        torch = versions.get("torch")
        if torch and not _contains(self.requires_torch, torch):
            found.append(("torch", self.requires_torch, torch))
        return found


def _needs(misfits: list[tuple[str, str, str]]) -> str:
    """"needs Python >= 3.11, the image has 3.10" (both named when both miss)."""
    if len(misfits) == 1:
        what, needs, has = misfits[0]
        return f"needs {_spoken(what, needs)}, the image has {has}"
    return (f"needs {' and '.join(_spoken(w, n) for w, n, _ in misfits)}, the image has "
            f"{' and '.join(f'{w} {h}' for w, _, h in misfits)}")


def installed_release() -> Release | None:
    """The notebook's accelerate, from its installed metadata (which may be newer than the table)."""
    try:
        meta = md.metadata(LAUNCHER)
    except md.PackageNotFoundError:
        return None
    torch = [str(r.specifier) for r in map(_requirement, meta.get_all("Requires-Dist") or [])
             if r is not None and canonical(r.name) == "torch" and (r.marker is None or r.marker.evaluate({"extra": ""}))]
    return Release(meta["Version"], (meta.get_all("Requires-Python") or [""])[0], torch[0] if torch else "")


@lru_cache(maxsize=1)
def _table() -> tuple[Release, ...]:
    rows = json.loads(RELEASES_FILE.read_text(encoding="utf-8"))["releases"]
    return tuple(Release(r["version"], r.get("requires_python", ""), r.get("torch", "")) for r in rows)


def launcher_releases() -> list[Release]:
    """Every accelerate release known here, newest first: the table's, the installed one's own
    metadata in place of its row (or added)."""
    from packaging.version import Version

    known = {Version(r.version): r for r in _table()}
    mine = installed_release()
    if mine is not None:
        known[Version(mine.version)] = mine
    return [known[v] for v in sorted(known, reverse=True)]


def launcher_release(version: str) -> Release | None:
    """The facts of one accelerate release (None: not known here)."""
    from packaging.version import InvalidVersion, Version

    try:
        wanted = Version(version)
    except InvalidVersion:
        return None
    return next((r for r in launcher_releases() if Version(r.version) == wanted), None)


@dataclass(frozen=True)
class JobLauncher:
    """The accelerate a job installs: the notebook's, or the newest of its major version that
    installs in the image (`needs` says why the notebook's does not). `problem`: no release of
    that major installs there (`version` is then the notebook's, which cannot be used)."""

    version: str
    notebook: str
    needs: str = ""    # what the notebook's needs and the image lacks, e.g. "needs Python >= 3.11, the image has 3.10"
    problem: str = ""

    @property
    def pin(self) -> str:
        return f"{LAUNCHER}=={self.version}" if self.version else LAUNCHER

    @property
    def kept(self) -> bool:
        return self.version == self.notebook

    @property
    def note(self) -> str:
        """A line for --dry-run and the job's record ("" when the notebook's version is kept)."""
        return "" if self.kept or self.problem else (f"{LAUNCHER} {self.version} in the job: the notebook's "
                                                     f"{self.notebook} {self.needs}")

    def to_record(self) -> dict:
        return {"version": self.version, "notebook": self.notebook, **({"note": self.note} if self.note else {})}


def job_launcher(python: tuple[int, int] | None, versions: Mapping[str, str] | None = None) -> JobLauncher:
    """The accelerate for a job in an image with this Python and these fixed versions (e.g.
    {"torch": "2.5.1"}); what is not known (None, absent) is taken to fit."""
    from packaging.version import Version

    mine = installed_release()
    if mine is None:
        return JobLauncher("", "")
    versions = versions or {}
    misfits = mine.misfits(python, versions)
    if not misfits:
        return JobLauncher(mine.version, mine.version)
    needs = _needs(misfits)
    ours = Version(mine.version)
    same_major = [r for r in launcher_releases() if Version(r.version).major == ours.major]
    for release in same_major:
        v = Version(release.version)
        if v < ours and not v.is_prerelease and not release.misfits(python, versions):
            return JobLauncher(release.version, mine.version, needs)
    oldest = same_major[-1]
    if oldest is mine:
        problem = (f"{LAUNCHER} {mine.version} (the notebook's) {needs}, and sm_magic knows no older "
                   f"{ours.major}.x release")
    else:
        problem = (f"no {LAUNCHER} {ours.major}.x installs there: even {oldest.version}, the oldest, "
                   f"{_needs(oldest.misfits(python, versions))}")
    return JobLauncher(mine.version, mine.version, needs, problem)


# Modules that import a package their own distribution does not require: torch's SummaryWriter
# needs tensorboard, which no torch release depends on and the training images lack.
_ALSO_NEEDS = {"torch.utils.tensorboard": "tensorboard"}


def imported_modules(texts: Iterable[str]) -> set[str]:
    """Top-level modules the code imports, less the standard library and sm_magic (carried),
    plus what an imported module needs beside its own distribution (_ALSO_NEEDS)."""
    tops: set[str] = set()
    paths: set[str] = set()
    for text in texts:
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                paths.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                paths.add(node.module)
                paths.update(f"{node.module}.{a.name}" for a in node.names)
    for path in paths:
        tops.add(path.split(".")[0])
        tops.update(top for module, top in _ALSO_NEEDS.items() if path == module or path.startswith(module + "."))
    return tops - set(sys.stdlib_module_names) - {"__future__", "sm_magic"}


def generate(texts: Iterable[str], provided: frozenset[str], bundled: Iterable[str] = (),
             launcher: JobLauncher | None = None) -> list[str]:
    """requirements.txt lines for code that imports what `texts` import; `provided`: canonical
    names of what the image carries; `bundled`: module names the bundle itself holds; `launcher`:
    the accelerate to pin (default: the notebook's)."""
    launcher = launcher or job_launcher(None)
    pinned: dict[str, str] = {LAUNCHER: launcher.pin}
    named, unknown = [], []
    for top in sorted(imported_modules(texts) - set(bundled)):
        dists = _distributions().get(top)
        if not dists:
            # Not an installed package: most likely a module beside the notebook, which pip
            # must not look up on PyPI under that name.
            unknown.append(top)
        for dist in dists or ():
            key = canonical(dist)
            if key in provided:
                if key not in named:
                    named.append(key)
            elif key not in pinned:
                pinned[key] = f"{dist}=={installed_version(dist)}"
    lines = list(pinned.values()) + named
    if named:
        lines.append(PROVIDED_NOTE + ", ".join(named))
    if unknown:
        lines.append(NOT_LISTED_NOTE + ", ".join(unknown))
    if launcher.note:
        lines.append(f"# {launcher.note}")
    return lines


MAX_FILE_BYTES = 1024 * 1024  # a requirements file, hashes and all, is kilobytes


def _read_file(path: Path) -> list[str]:
    """A user's requirements file, checked for what the bundle cannot carry."""
    try:
        lines = read_text(path, MAX_FILE_BYTES).splitlines()  # a FIFO would block the kernel until interrupted
    except FileNotFoundError:
        raise RequirementsError(f"no requirements file {path}: check the path given to --requirements") from None
    except OSError as e:
        raise RequirementsError(f"cannot read the requirements file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise RequirementsError(f"the requirements file {path} is not UTF-8 text: save it as UTF-8") from None
    try:
        found = pip_lines.entries(lines)
    except pip_lines.LineError as e:
        number = e.args[1]
        raise RequirementsError(f"{path}, line {number}: {lines[number - 1].strip()!r} is not a line pip reads "
                                f"({e.args[0]}): correct or remove it") from None
    for entry in found:
        shown = " ".join(lines[entry.first - 1:entry.last]).strip()
        if entry.get("requirement") or entry.get("constraint"):
            raise RequirementsError(f"{path}, line {entry.first}: {shown!r} refers to another file, which the "
                                    "bundle does not carry: copy its lines into this file")
        if any(pip_lines.is_local(target) for target in pip_lines.targets(entry)):
            raise RequirementsError(f"{path}, line {entry.first}: {shown!r} installs from a path on this "
                                    "machine, which the training container does not have: name the package "
                                    "(and version) instead, or carry the code with --include")
    return lines


def names_launcher(lines: Iterable[str]) -> bool:
    return any(_name(text) == LAUNCHER for text in _requirement_texts(lines))


def from_file(path: Path, launcher: JobLauncher | None = None) -> list[str]:
    """A user's requirements file, as written, plus accelerate (`launcher`, default the
    notebook's) when it does not name it."""
    return _with_launcher(_read_file(path), launcher or job_launcher(None))


def _with_launcher(lines: list[str], launcher: JobLauncher) -> list[str]:
    if names_launcher(lines):
        return lines
    return lines + [LAUNCHER_NOTE, launcher.pin] + ([f"# {launcher.note}"] if launcher.note else [])


class JobRequirements(NamedTuple):
    lines: list[str]                # requirements.txt
    origin: str                     # where they came from, for --dry-run
    launcher: JobLauncher | None    # the accelerate sm_magic added (None: the user's file names its own)


def for_job(texts: Iterable[str], provided: frozenset[str], *, own_file: Path | None = None,
            bundled: Iterable[str] = (), distributed_type: str | None = None,
            launcher: JobLauncher | None = None) -> JobRequirements:
    """The bundle's requirements.txt lines, where they came from and the accelerate added:
    `own_file` (the user's, or the code tree's) when given, else generated from the imports in
    `texts`; `launcher` (default: the notebook's accelerate, see `job_launcher`) where the lines
    do not name accelerate already. DeepSpeed jobs get deepspeed too."""
    launcher = launcher or job_launcher(None)
    if own_file is not None:
        own = _read_file(own_file)
        added = None if names_launcher(own) else launcher
        lines, origin = _with_launcher(own, launcher), str(own_file)
    else:
        lines, origin, added = generate(texts, provided, bundled, launcher), "generated from the code's imports", launcher
    if distributed_type == "DEEPSPEED" and not any(_name(t) == "deepspeed" for t in _requirement_texts(lines)):
        version = installed_version("deepspeed")
        lines.append(f"deepspeed=={version}" if version else "deepspeed")
    return JobRequirements(lines, origin, added)


def image_problems(job: JobRequirements, python: tuple[int, int] | None,
                   versions: dict[str, str] | None = None) -> list[str]:
    """Why a job's requirements would not install in an image ([] when nothing is known to be
    wrong): no accelerate release for it, or a pin that does not install there (`problems`)."""
    if job.launcher is not None and job.launcher.problem:
        return [job.launcher.problem]
    return problems(job.lines, python, versions)


def _requirement_texts(lines: Iterable[str]) -> list[str]:
    """Each requirement as pip reads it: continuation lines joined, comments and options apart."""
    lines = list(lines)
    try:
        return [e.requirement for e in pip_lines.entries(lines) if e.requirement]
    except pip_lines.LineError:  # a file _read_file has not seen: its plain lines
        return [l.split(" #")[0].strip() for l in lines if not l.lstrip().startswith(("#", "-"))]


def _name(line: str) -> str | None:
    """The canonical project name a requirement line names (None: a comment or an option)."""
    text = line.split("#")[0].strip()
    if not text or text.startswith("-"):
        return None
    m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)", text)
    return canonical(m.group(1)) if m else None


def _requirement(line: str):
    from packaging.requirements import InvalidRequirement, Requirement

    text = line.split(" #")[0].strip()
    if not text or text.startswith(("#", "-")):
        return None
    try:
        return Requirement(text)
    except InvalidRequirement:
        return None


def image_environment(python: tuple[int, int]) -> dict[str, str]:
    """PEP 508 marker values inside a Linux x86_64 CPython image of this Python version."""
    version = f"{python[0]}.{python[1]}"
    return {"python_version": version, "python_full_version": f"{version}.0", "os_name": "posix",
            "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
            "platform_python_implementation": "CPython", "implementation_name": "cpython", "extra": ""}


def problems(lines: Iterable[str], python: tuple[int, int] | None,
             versions: dict[str, str] | None = None) -> list[str]:
    """Why these requirements would not install in an image with this Python (and these fixed
    versions, e.g. {"torch": "2.9.0"}); [] when nothing is known to be wrong. Only pins of a
    version installed here (their metadata is on this machine) and of an accelerate release in the
    table can be checked offline."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    found = []
    env = image_environment(python) if python else None
    fixed = {canonical(k): v for k, v in (versions or {}).items() if v}
    for line in _requirement_texts(lines):
        req = _requirement(line)
        if req is None or (env and req.marker is not None and not req.marker.evaluate(env)):
            continue
        pinned = [s.version for s in req.specifier if s.operator in ("==", "===")]
        if not pinned:
            continue
        dist = canonical(req.name)
        facts = _pin_facts(req.name, pinned[0])
        if facts is None:
            continue
        requires_python, requires_dist = facts
        if python and requires_python:
            try:
                if not SpecifierSet(requires_python).contains(f"{python[0]}.{python[1]}", prereleases=True):
                    found.append(f"{req.name}=={pinned[0]} requires Python {requires_python} (the image "
                                 f"has Python {python[0]}.{python[1]})")
                    continue
            except InvalidSpecifier:
                pass
        for text in requires_dist:
            need = _requirement(text)
            if need is None or canonical(need.name) not in fixed or canonical(need.name) == dist:
                continue
            if env and need.marker is not None and not need.marker.evaluate(env):
                continue
            have = fixed[canonical(need.name)]
            try:
                if need.specifier and not need.specifier.contains(Version(have), prereleases=True):
                    found.append(f"{req.name}=={pinned[0]} requires {need.name}{need.specifier} (the image has "
                                 f"{need.name} {have})")
            except InvalidVersion:
                pass
    return found


def _pin_facts(name: str, version: str) -> tuple[str, list[str]] | None:
    """(Requires-Python, Requires-Dist) of a pinned release, where known offline: a package
    installed here at that version, or an accelerate release of the table."""
    if canonical(name) == LAUNCHER:
        release = launcher_release(version)
        if release is None:
            return None
        return release.requires_python, [f"torch{release.requires_torch}"] if release.requires_torch else []
    if installed_version(name) != version:
        return None
    meta = md.metadata(name)
    return (meta.get_all("Requires-Python") or [""])[0], meta.get_all("Requires-Dist") or []
