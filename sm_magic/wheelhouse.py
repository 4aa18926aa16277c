"""Wheels for a job that runs without network (`enable_network_isolation`): everything its
requirements.txt installs, downloaded at launch for the image's Python and platform, carried in
the bundle's `sm_wheels/` and installed with `pip --no-index`.

pip itself resolves the requirements (`pip install --dry-run --report` for the image's Python and
platform, with the image's own torch pinned); what the image's torch stack brings (torch, triton,
the nvidia-* libraries: gigabytes the image already has) is left out, everything else the
requirements need is carried. Downloads are cached (`$SM_MAGIC_CACHE`, default
~/.cache/sm_magic): a second launch with the same requirements for the same image downloads
nothing and makes no network call.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable

from .errors import UsageProblem
from .config_files import cache_home
from .requirements import canonical, image_environment

WHEELS_DIR = "sm_wheels"
OFFLINE_HEADER = ["# network isolation: the container installs only the wheels carried in sm_wheels/",
                  "--no-index", f"--find-links {WHEELS_DIR}"]
# The image's torch and what only it needs: never carried (the image has them).
_IMAGE_ONLY = re.compile(r"^(torch|torchvision|torchaudio|triton|pytorch-triton.*|nvidia-.*)$")
PIP_TIMEOUT = 900  # seconds for one pip run (a slow network and large wheels)


class WheelhouseError(UsageProblem, ValueError):
    """The wheels cannot be had; the message names the package and what to change."""


@dataclass
class Wheelhouse:
    files: list[Path]        # wheel files in the cache
    cached: bool             # True: nothing was downloaded this time

    @property
    def size(self) -> int:
        return sum(f.stat().st_size for f in self.files)

    def copy_to(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for f in self.files:
            try:
                os.link(f, directory / f.name)  # same file system: no copy
            except OSError:
                shutil.copyfile(f, directory / f.name)


def cache_dir() -> Path:
    return cache_home() / "wheels"


def offline_requirements(lines: Iterable[str]) -> list[str]:
    """requirements.txt lines that install only from the bundle's sm_wheels/."""
    return OFFLINE_HEADER + list(lines)


def platform_tags(platform: str) -> list[str]:
    """`manylinux_2_35_x86_64` and every older manylinux tag a glibc 2.35 system also runs (pip
    expands only the legacy manylinux2014 names by itself)."""
    m = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if not m:
        return [platform]
    newest, arch = int(m.group(1)), m.group(2)
    return [f"manylinux_2_{y}_{arch}" for y in range(newest, 4, -1)] + [
        f"manylinux{legacy}_{arch}" for legacy in ("2014", "2010", "1")]


def _requirement_lines(lines: Iterable[str]) -> list[str]:
    return [l.split(" #")[0].strip() for l in lines if l.strip() and not l.strip().startswith("#")]


def collect(lines: Iterable[str], python: tuple[int, int], platform: str, fixed: dict | None = None,
            log=None) -> Wheelhouse:
    """The wheels `lines` need in an image with this Python, platform and fixed versions
    (e.g. {"torch": "2.9.0"}); downloaded unless the cache has them."""
    reqs = _requirement_lines(lines)
    fixed = {canonical(k): v for k, v in (fixed or {}).items() if v}
    key = hashlib.sha256(json.dumps([reqs, list(python), platform, sorted(fixed.items())]).encode()).hexdigest()[:24]
    root = cache_dir()
    manifest = root / "sets" / f"{key}.json"
    if manifest.is_file():
        files = [root / "files" / n for n in json.loads(manifest.read_text())["files"]]
        if all(f.is_file() for f in files):
            return Wheelhouse(files, cached=True)
    (root / "files").mkdir(parents=True, exist_ok=True)
    (root / "sets").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sm_magic-wheels-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "requirements.txt").write_text("\n".join(reqs) + "\n", encoding="utf-8")
        (tmp / "constraints.txt").write_text("".join(f"{k}=={v}\n" for k, v in fixed.items()), encoding="utf-8")
        target = ["--only-binary=:all:", "--python-version", f"{python[0]}.{python[1]}", "--implementation", "cp"]
        for tag in platform_tags(platform):
            target += ["--platform", tag]
        if log:
            log(f"resolving the wheels for Python {python[0]}.{python[1]} on {platform} (network isolation) ...")
        report = tmp / "report.json"
        _pip(["install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report), "--target",
              str(tmp / "target"), *target, "-r", str(tmp / "requirements.txt"), "-c", str(tmp / "constraints.txt")],
             python, platform)
        pins = _needed(json.loads(report.read_text()), reqs, python)
        if pins:
            if log:
                log(f"downloading {len(pins)} wheels ...")
            _pip(["download", "--no-deps", "--quiet", "-d", str(tmp / "dl"), *target, *pins], python, platform)
        names = []
        for f in sorted((tmp / "dl").glob("*.whl")) if pins else []:
            os.replace(f, root / "files" / f.name)
            names.append(f.name)
    _atomic_json(manifest, {"requirements": reqs, "python": list(python), "platform": platform, "files": names})
    return Wheelhouse([root / "files" / n for n in names], cached=False)


def _needed(report: dict, roots: list[str], python: tuple[int, int]) -> list[str]:
    """`name==version` of every package the roots need, through their dependencies, except what
    only the image's torch stack needs."""
    from packaging.requirements import InvalidRequirement, Requirement

    items = {canonical(i["metadata"]["name"]): i["metadata"] for i in report.get("install", [])}
    env = image_environment(python)
    todo: list[tuple[str, frozenset]] = []
    for line in roots:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        todo.append((canonical(req.name), frozenset(req.extras)))
    seen: set[tuple[str, frozenset]] = set()
    needed: dict[str, str] = {}
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen or _IMAGE_ONLY.match(name) or name not in items:
            continue
        seen.add((name, extras))
        meta = items[name]
        needed[name] = meta["version"]
        for text in meta.get("requires_dist") or []:
            req = Requirement(text)
            if req.marker is not None and not any(req.marker.evaluate({**env, "extra": e}) for e in (extras or {""})):
                continue
            todo.append((canonical(req.name), frozenset(req.extras)))
    return [f"{n}=={v}" for n, v in sorted(needed.items())]


def _pip(args: list[str], python: tuple[int, int], platform: str) -> None:
    try:
        done = subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check"],
                              capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise WheelhouseError(f"pip took over {PIP_TIMEOUT} s to fetch the wheels: check the network") from None
    if done.returncode == 0:
        return
    err = done.stderr.strip()
    missing = re.search(r"No matching distribution found for (\S+)", err)
    if missing:
        raise WheelhouseError(
            f"enable_network_isolation: {missing.group(1)} has no wheel for the image's Python "
            f"{python[0]}.{python[1]} on {platform}, so a container without network cannot install it. "
            "Use a version that publishes such a wheel (or a pure-Python one), or a training image whose Python it "
            "supports, or leave out enable_network_isolation. pip said: " + _last_lines(err))
    if re.search(r"(NewConnectionError|Max retries exceeded|Temporary failure in name resolution|"
                 r"Network is unreachable)", err):
        raise WheelhouseError("enable_network_isolation: the wheels the job needs are downloaded at launch (then "
                              "cached), and PyPI cannot be reached from here: " + _last_lines(err))
    raise WheelhouseError("enable_network_isolation: pip could not fetch the wheels the job needs: " + _last_lines(err))


def _last_lines(text: str, n: int = 3) -> str:
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.lstrip().startswith("WARNING")]
    return " | ".join(lines[-n:]) or "(no message)"


def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)

