"""requirements.txt for a job bundle: what the training container installs before the script runs.

The policy (docs/backends.md, "Requirements"):
- A requirements file of the user's wins: `--requirements FILE`, else the code tree's own
  requirements.txt (a git repository's), else a requirements.txt beside the notebook. It is used
  as written, with `accelerate` added when it does not name it (the entry command runs it).
- Otherwise the file is made from the code's imports:
  - `accelerate`, the launcher, pinned to the notebook's version (the bundle's launch config and
    flags are written for it, and the script ran locally with it);
  - a package the training image provides (torch, transformers, numpy, ...) by name only, so the
    image's own build stays, and pip installs one only where the image lacks it;
  - any other installed package, pinned to the notebook's version;
  - a module that is not installed here is not listed (most likely a file beside the notebook).
- Every pin of a package installed here at that version is checked against the image before
  anything is uploaded (`problems`): its Requires-Python against the image's Python, and what it
  requires of packages whose version the image fixes (torch, transformers) against those.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from functools import lru_cache
from pathlib import Path
from collections.abc import Iterable, Mapping

from .errors import UsageProblem

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
    return f"{LAUNCHER}=={installed_version(LAUNCHER)}"


def imported_modules(texts: Iterable[str]) -> set[str]:
    """Top-level modules the code imports, less the standard library and sm_magic (carried)."""
    tops: set[str] = set()
    for text in texts:
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                tops.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops.add(node.module.split(".")[0])
    return tops - set(sys.stdlib_module_names) - {"__future__", "sm_magic"}


def generate(texts: Iterable[str], provided: frozenset[str], bundled: Iterable[str] = ()) -> list[str]:
    """requirements.txt lines for code that imports what `texts` import; `provided`: canonical
    names of what the image carries; `bundled`: module names the bundle itself holds."""
    pinned: dict[str, str] = {LAUNCHER: launcher_pin()}
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
    return lines


def from_file(path: Path) -> list[str]:
    """A user's requirements file, as written, plus accelerate when it does not name it."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise RequirementsError(f"no requirements file {path}: check the path given to --requirements") from None
    except OSError as e:
        raise RequirementsError(f"cannot read the requirements file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise RequirementsError(f"the requirements file {path} is not UTF-8 text: save it as UTF-8") from None
    for number, line in enumerate(lines, 1):
        text = line.split(" #")[0].strip()
        if re.match(r"^(-r|-c|--requirement|--constraint)\b", text):
            raise RequirementsError(f"{path}, line {number}: {line.strip()!r} refers to another file, which the "
                                    "bundle does not carry: copy its lines into this file")
        if text.startswith(("-e ", "--editable", "-e.")) or (text and not text.startswith(("#", "-"))
                                                             and _local_path(text)):
            raise RequirementsError(f"{path}, line {number}: {line.strip()!r} installs from a path on this "
                                    "machine, which the training container does not have: name the package "
                                    "(and version) instead, or carry the code with --include")
    if not any(_name(line) == LAUNCHER for line in lines):
        lines += [LAUNCHER_NOTE, launcher_pin()]
    return lines


def for_job(texts: Iterable[str], provided: frozenset[str], *, own_file: Path | None = None,
            bundled: Iterable[str] = (), distributed_type: str = "NO") -> tuple[list[str], str]:
    """The bundle's requirements.txt lines and where they came from: `own_file` (the user's, or
    the code tree's) when given, else generated from the imports in `texts`. DeepSpeed jobs get
    deepspeed too."""
    if own_file is not None:
        lines, origin = from_file(own_file), str(own_file)
    else:
        lines, origin = generate(texts, provided, bundled), "generated from the code's imports"
    if distributed_type == "DEEPSPEED" and not any(_name(l) == "deepspeed" for l in lines):
        version = installed_version("deepspeed")
        lines.append(f"deepspeed=={version}" if version else "deepspeed")
    return lines, origin


def _local_path(text: str) -> bool:
    return text.startswith((".", "/", "~", "file:"))


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
    version installed here can be checked offline (their metadata is on this machine)."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    found = []
    env = image_environment(python) if python else None
    fixed = {canonical(k): v for k, v in (versions or {}).items() if v}
    for line in lines:
        req = _requirement(line)
        if req is None or (env and req.marker is not None and not req.marker.evaluate(env)):
            continue
        pinned = [s.version for s in req.specifier if s.operator in ("==", "===")]
        if not pinned:
            continue
        dist = canonical(req.name)
        if installed_version(req.name) != pinned[0]:
            continue
        meta = md.metadata(req.name)
        requires_python = (meta.get_all("Requires-Python") or [""])[0]
        if python and requires_python:
            try:
                if not SpecifierSet(requires_python).contains(f"{python[0]}.{python[1]}", prereleases=True):
                    found.append(f"{req.name}=={pinned[0]} requires Python {requires_python} (the image "
                                 f"has Python {python[0]}.{python[1]})")
                    continue
            except InvalidSpecifier:
                pass
        for text in meta.get_all("Requires-Dist") or []:
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
