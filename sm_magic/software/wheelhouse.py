"""Wheels for a job that runs without network (`enable_network_isolation`): everything its
requirements.txt installs, downloaded at launch for the image's Python and platform, carried in
the bundle's `sm_wheels/` and installed with `pip --no-index`.

pip itself resolves the requirements (`pip install --dry-run --report` for the image's Python and
platform, with the image's own torch pinned); what the image's torch stack brings (torch, triton,
the nvidia-* libraries: gigabytes the image already has) is left out, everything else the
requirements need is carried. pip looks only where the requirements file's index options say,
and each wheel is downloaded as the very file resolved (its hash, or the file's own `--hash`), so
no same-named package from another index is carried. Downloads are cached by content
(`$SM_MAGIC_CACHE`, default ~/.cache/sm_magic): a second launch with the same requirements for
the same image downloads nothing and makes no network call.
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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..config.files import cache_home
from ..errors import UsageProblem
from . import pip_lines
from .requirements import canonical, image_environment

WHEELS_DIR = "sm_wheels"
OFFLINE_HEADER = ["# network isolation: the container installs only the wheels carried in sm_wheels/",
                  "--no-index", f"--find-links {WHEELS_DIR}"]
# The image's torch and what only it needs: never carried (the image has them).
_IMAGE_ONLY = re.compile(r"^(torch|torchvision|torchaudio|triton|pytorch-triton.*|nvidia-.*)$")
PIP_TIMEOUT = 900  # seconds for one pip run (a slow network and large wheels)
_ROUNDS = 4  # resolutions at most, each adding what the image's markers need and pip's left out


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
    """requirements.txt lines that install only from the bundle's sm_wheels/: the file's own
    index options become comments (the wheels came from there; the container, without network,
    must not look there), and no URL keeps its password."""
    lines = list(lines)
    try:
        found = pip_lines.entries(lines)
    except pip_lines.LineError:
        found = []
    for entry in found:
        if any(entry.get(o) for o in pip_lines.INDEX_OPTIONS):
            for i in range(entry.first - 1, entry.last):
                lines[i] = "# " + lines[i]
    return OFFLINE_HEADER + without_passwords(lines)


def without_passwords(lines: Iterable[str]) -> list[str]:
    """The lines with every URL's password shown as `****` (a private index's token is needed
    only to download the wheels, here)."""
    return [pip_lines.redact(line) for line in lines]


def platform_tags(platform: str) -> list[str]:
    """`manylinux_2_35_x86_64` and every older manylinux tag a glibc 2.35 system also runs (pip
    expands only the legacy manylinux2014 names by itself)."""
    m = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if not m:
        return [platform]
    newest, arch = int(m.group(1)), m.group(2)
    return [f"manylinux_2_{y}_{arch}" for y in range(newest, 4, -1)] + [
        f"manylinux{legacy}_{arch}" for legacy in ("2014", "2010", "1")]


def collect(lines: Iterable[str], python: tuple[int, int], platform: str, fixed: dict | None = None,
            log=None, base: Path | None = None) -> Wheelhouse:
    """The wheels `lines` need in an image with this Python, platform and fixed versions
    (e.g. {"torch": "2.9.0"}); downloaded unless the cache has them. pip looks where the lines'
    own index options say (`--index-url`, `--extra-index-url`, `--find-links`, `--no-index`,
    `--trusted-host`), from `base` (the requirements file's directory: relative --find-links),
    and every wheel carried must match the file's `--hash` for it. Raises WheelhouseError naming
    what is missing and where pip looked."""
    try:
        found = pip_lines.entries(list(lines))
    except pip_lines.LineError as e:
        raise WheelhouseError(f"enable_network_isolation: requirements.txt line {e.args[1]} is not a line pip "
                              f"reads ({e.args[0]})") from None
    fixed = {canonical(k): v for k, v in (fixed or {}).items() if v}
    shown = [pip_lines.redact(e.text) for e in found]  # a rotated token finds the same wheels
    key = hashlib.sha256(json.dumps([2, shown, list(python), platform, sorted(fixed.items())]).encode()).hexdigest()[:24]
    root = cache_dir()
    manifest = root / "sets" / f"{key}.json"
    if manifest.is_file():
        files = [root / "files" / n for n in json.loads(manifest.read_text())["files"]]
        if all(f.is_file() for f in files):
            return Wheelhouse(files, cached=True)
    (root / "files").mkdir(parents=True, exist_ok=True)
    (root / "sets").mkdir(parents=True, exist_ok=True)
    where = searched(found)
    index = [pip_lines.line(e, requirement="", only=pip_lines.INDEX_OPTIONS) for e in found
             if any(e.get(o) for o in pip_lines.INDEX_OPTIONS)]
    with tempfile.TemporaryDirectory(prefix="sm_magic-wheels-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "constraints.txt").write_text("".join(f"{k}=={v}\n" for k, v in fixed.items()), encoding="utf-8")
        target = ["--only-binary=:all:", "--python-version", f"{python[0]}.{python[1]}", "--implementation", "cp"]
        for tag in platform_tags(platform):
            target += ["--platform", tag]
        if log:
            log(f"resolving the wheels for Python {python[0]}.{python[1]} on {platform} (network isolation) ...")
        items, absent = _resolve(tmp, found, target, python, platform, where, base)
        pins = _pins(items, found)
        if pins:
            if log:
                log(f"downloading {len(pins)} wheels ...")
            # pip in hash-checking mode wants a hash on every line: pins without one (an index
            # that gives none) go in a run of their own.
            for group in ([p for p in pins if "--hash" in p], [p for p in pins if "--hash" not in p]):
                if group:
                    (tmp / "pins.txt").write_text("\n".join(index + group) + "\n", encoding="utf-8")
                    _pip(["download", "--no-deps", "--quiet", "-d", str(tmp / "dl"), *target, "-r",
                          str(tmp / "pins.txt")], python, platform, where, base)
        wheels = sorted((tmp / "dl").glob("*.whl")) if pins else []
        _check_complete(items, absent, found, wheels, python, where)
        names = []
        for f in wheels:
            # By content: two indexes' files of one name and version never stand for each other.
            name = f"{hashlib.sha256(f.read_bytes()).hexdigest()[:32]}/{f.name}"
            (root / "files" / name).parent.mkdir(exist_ok=True)
            os.replace(f, root / "files" / name)
            names.append(name)
    _atomic_json(manifest, {"requirements": shown, "python": list(python), "platform": platform, "files": names})
    return Wheelhouse([root / "files" / n for n in names], cached=False)


def _resolve(tmp: Path, found: list[pip_lines.Entry], target: list[str], python: tuple[int, int], platform: str,
             where: str, base: Path | None) -> tuple[list[dict], list[str]]:
    """pip's resolution for the image: the report's entries of what to carry, and what the image
    needs that pip still left out (`_needed`)."""
    env = image_environment(python)
    # pip evaluates markers for the Python it runs on, not --python-version's: the lines are
    # given to it with their markers decided for the image, and a dependency whose marker only
    # the image meets is asked for by name in another round.
    lines = [t for t in (_for_image(e, env) for e in found) if t is not None]
    extra: list[str] = []
    for _ in range(_ROUNDS):
        (tmp / "requirements.txt").write_text("\n".join(lines + extra) + "\n", encoding="utf-8")
        report = tmp / "report.json"
        _pip(["install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report), "--target",
              str(tmp / "target"), *target, "-r", str(tmp / "requirements.txt"), "-c", str(tmp / "constraints.txt")],
             python, platform, where, base)
        items, absent = _needed(json.loads(report.read_text()), python)
        if not absent or set(absent) <= set(extra):
            break
        extra += [a for a in absent if a not in extra]
    return items, absent


def _for_image(entry: pip_lines.Entry, env: dict[str, str]) -> str | None:
    """The entry as pip should resolve it for the image: its marker decided there (None: the
    image does not install it), and without its hashes (pip trusts what an image has installed,
    its torch and nvidia libraries, without theirs, and here, with --ignore-installed, would ask
    for them; the hashes are checked on what is carried)."""
    from packaging.requirements import InvalidRequirement, Requirement

    requirement = None
    try:
        req = Requirement(entry.requirement) if entry.requirement else None
    except InvalidRequirement:
        req = None
    if req is not None and req.marker is not None:
        if not req.marker.evaluate(env):
            return None
        req.marker = None
        requirement = str(req)
    return pip_lines.line(entry, leave_out=("hash", "require_hashes", "no_require_hashes"), requirement=requirement)


def searched(found: list[pip_lines.Entry]) -> str:
    """Where pip looks for these lines' packages, in words (passwords hidden)."""
    def every(option: str) -> list[str]:
        return [v for e in found for v in e.get(option)]

    places = []
    if not every("no_index"):
        indexes = every("index_url")
        places = [indexes[-1] if indexes else "pip's default index (PyPI, unless pip's configuration names another)"]
        places += every("extra_index_url")
    places += every("find_links")
    return ", ".join(pip_lines.redact(p) for p in places) or "nowhere (--no-index and no --find-links)"


def _hashes(found: list[pip_lines.Entry]) -> tuple[dict[str, list[str]], bool]:
    """The file's `--hash` values by package, and whether pip checks hashes (hash-checking
    mode: `--require-hashes`, or any `--hash` unless `--no-require-hashes`)."""
    hashes: dict[str, list[str]] = {}
    for e in found:
        name = pip_lines.project_name(e)
        if name and e.get("hash"):
            hashes.setdefault(canonical(name), []).extend(e.get("hash"))
    required = any(e.get("require_hashes") for e in found) or (
        bool(hashes) and not any(e.get("no_require_hashes") for e in found))
    return hashes, required


def _pins(items: list[dict], found: list[pip_lines.Entry]) -> list[str]:
    """One `name==version --hash=...` line per wheel to carry: the file's hashes for it where it
    gives them, else the hash of the very file pip resolved (so the download cannot bring
    another file of that name and version from another index)."""
    hashes, required = _hashes(found)
    unhashed = [f"{i['metadata']['name']}=={i['metadata']['version']}" for i in items
                if canonical(i["metadata"]["name"]) not in hashes]
    if required and unhashed:
        raise WheelhouseError(
            "enable_network_isolation: the requirements file pins with --hash (pip's hash-checking mode: every "
            f"package installed needs its hash), and it has none for {', '.join(unhashed)}. Add "
            f"{'them' if len(unhashed) > 1 else 'it'} with {'their' if len(unhashed) > 1 else 'its'} hashes (e.g. "
            "list it in requirements.in and run pip-compile --generate-hashes again). Nothing was uploaded.")
    # A requirement given by its URL is downloaded from that URL, as written (pip's report
    # shows it without its password).
    direct = {canonical(n): e.requirement for e in found if e.requirement and (n := pip_lines.project_name(e))}
    pins = []
    for item in items:
        meta, info = item["metadata"], item.get("download_info", {})
        key = canonical(meta["name"])
        resolved = (info.get("archive_info", {}).get("hashes") or {}).get("sha256")
        chosen = hashes.get(key) or ([f"sha256:{resolved}"] if resolved else [])
        what = (direct.get(key) or f"{meta['name']} @ {info['url']}") if item.get("is_direct") else \
            f"{meta['name']}=={meta['version']}"
        pins.append(" ".join([what, *(f"--hash={h}" for h in chosen)]))
    return pins


def _check_complete(items: list[dict], absent: list[str], found: list[pip_lines.Entry], wheels: list[Path],
                    python: tuple[int, int], where: str) -> None:
    """Refuse a wheelhouse that lacks a wheel for something the lines install in the image: the
    container, without network, would fail to install it."""
    from packaging.requirements import InvalidRequirement, Requirement

    carried = {canonical(w.name.split("-")[0]) for w in wheels}
    wanted = {canonical(i["metadata"]["name"]): i["metadata"]["name"] for i in items}
    env = image_environment(python)
    for text in absent + [e.requirement for e in found if e.requirement]:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if not req.url and (req.marker is None or req.marker.evaluate(env)):
            wanted.setdefault(canonical(req.name), req.name)
    missing = sorted(name for key, name in wanted.items() if key not in carried and not _IMAGE_ONLY.match(key))
    if missing:
        raise WheelhouseError(
            f"enable_network_isolation: no wheel of {', '.join(missing)} for the image's Python "
            f"{python[0]}.{python[1]} was found in {where}, so a container without network could not install "
            f"{'them' if len(missing) > 1 else 'it'}. Publish such a wheel where the requirements file looks "
            "(--index-url, --extra-index-url, --find-links), or leave out enable_network_isolation. Nothing was "
            "uploaded.")


def _needed(report: dict, python: tuple[int, int]) -> tuple[list[dict], list[str]]:
    """The report's entry of every package the requested ones need in the image, through their
    dependencies, except what only the image's torch stack needs; and each such dependency the
    report lacks (`name>=1` as it was required: pip read its marker for this machine's Python)."""
    from packaging.requirements import Requirement

    items = {canonical(i["metadata"]["name"]): i for i in report.get("install", [])}
    env = image_environment(python)
    todo = [(key, frozenset(i.get("requested_extras") or ())) for key, i in items.items() if i.get("requested")]
    seen: set[tuple[str, frozenset]] = set()
    needed: dict[str, dict] = {}
    absent: list[str] = []
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen or _IMAGE_ONLY.match(name):
            continue
        seen.add((name, extras))
        needed[name] = items[name]
        for text in items[name]["metadata"].get("requires_dist") or []:
            req = Requirement(text)
            if req.marker is not None and not any(req.marker.evaluate({**env, "extra": e}) for e in (extras or {""})):
                continue
            if canonical(req.name) not in items and not _IMAGE_ONLY.match(canonical(req.name)):
                req.marker = None
                absent.append(str(req))
                continue
            todo.append((canonical(req.name), frozenset(req.extras)))
    return [needed[n] for n in sorted(needed)], sorted(set(absent))


def _pip(args: list[str], python: tuple[int, int], platform: str, where: str, base: Path | None = None) -> None:
    try:
        done = subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check"],
                              capture_output=True, text=True, timeout=PIP_TIMEOUT, cwd=base)
    except subprocess.TimeoutExpired:
        raise WheelhouseError(f"pip took over {PIP_TIMEOUT} s to fetch the wheels: check the network") from None
    if done.returncode == 0:
        return
    err = pip_lines.redact(done.stderr.strip())
    missing = re.search(r"No matching distribution found for (\S+)", err)
    if missing:
        raise WheelhouseError(
            f"enable_network_isolation: {missing.group(1)} has no wheel for the image's Python "
            f"{python[0]}.{python[1]} on {platform} in {where}, so a container without network cannot install it. "
            "Use a version that publishes such a wheel (or a pure-Python one), or a training image whose Python it "
            "supports, or leave out enable_network_isolation. pip said: " + _last_lines(err))
    tampered = re.search(r"DO NOT MATCH THE HASHES.*?\n\s+(\S+) from (\S+)", err, re.S)
    if tampered:
        raise WheelhouseError(
            f"enable_network_isolation: the wheel of {tampered.group(1)} from {tampered.group(2)} does not match the "
            "--hash the requirements file gives for it: if you changed its version, update the hash, else the "
            "index may have been tampered with. Nothing was uploaded.")
    if re.search(r"(NewConnectionError|Max retries exceeded|Temporary failure in name resolution|"
                 r"Network is unreachable)", err):
        raise WheelhouseError("enable_network_isolation: the wheels the job needs are downloaded at launch (then "
                              f"cached), and {where} cannot be reached from here: " + _last_lines(err))
    raise WheelhouseError("enable_network_isolation: pip could not fetch the wheels the job needs: " + _last_lines(err))


def _last_lines(text: str, n: int = 3) -> str:
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.lstrip().startswith("WARNING")]
    return " | ".join(lines[-n:]) or "(no message)"


def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)

