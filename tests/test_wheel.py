"""The wheel a user installs holds the whole package and runs a job on its own (issue 13).

With the package at the top level (sm_magic/, no src/), a test run from the repository imports
the working tree, so a module or a bundled runtime file that the wheel leaves out would go
unnoticed. These tests build the wheel from the repository's files, compare its contents with the
source package, install it into a fresh virtualenv and run a real local job with that virtualenv's
Python from a directory outside the repository.

The fresh virtualenv gets its third-party packages (torch, accelerate, ...) from the development
virtualenv through a `.pth` file that names the development site-packages: a directory named in a
`.pth` file is appended to sys.path, but the `.pth` files inside it (the editable install's finder
that maps `sm_magic` to the working tree) are not processed. The job's driver reports its
sys.path, sys.meta_path and where every `sm_magic` module came from, and the test checks them.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import uuid
import zipfile
from pathlib import Path

import pytest

from helpers.jobscripts import script

pytestmark = pytest.mark.jobs

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the tomli that pip carries
    from pip._vendor import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "sm_magic"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
BUILD_TIMEOUT = 300   # seconds: pip builds the wheel (about 2 s on an idle machine)
JOB_TIMEOUT = 300     # seconds for the job (the entry command imports torch and accelerate: ~4 s)
RUN_TIMEOUT = 600     # seconds for any process the test starts, a backstop for the waits above

# The job prints where it runs: its interpreter's prefix, the runtime module it imports (the
# bundle's copy) and its epochs.
JOB_SCRIPT = script("""
    import argparse, sys
    import sm_magic.runtime
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    print("prefix:", sys.prefix)
    print("runtime:", sm_magic.runtime.__file__)
    for epoch in range(args.epochs):
        acc = 0.5 + 0.1 * epoch
        print(f"epoch {epoch}: {{'accuracy': {acc}, 'f1': {acc - 0.05}}}")
""")

# Run by the fresh virtualenv's python: import every module of the installed package, launch the
# job, and print a JSON report as the last line.
DRIVER = script("""
    import importlib, importlib.metadata, json, pkgutil, sys
    import sm_magic

    script_path, name = sys.argv[1], sys.argv[2]
    report = {"prefix": sys.prefix, "path": sys.path, "meta_path": [repr(f) for f in sys.meta_path],
              "file": sm_magic.__file__,
              "dist_file": str(importlib.metadata.distribution("sm_magic").locate_file("sm_magic/__init__.py"))}
    report["modules"] = {info.name: importlib.import_module(info.name).__file__
                         for info in pkgutil.walk_packages(sm_magic.__path__, "sm_magic.")}
    job = sm_magic.launch(open(script_path, encoding="utf-8").read(), args=["--epochs", "3"],
                          backend="local", name=name)
    job.wait(timeout=float(sys.argv[3]))
    report.update(status=job.status, logs=job.logs())
    report["loaded"] = {k: getattr(m, "__file__", None) for k, m in list(sys.modules.items())
                        if k == "sm_magic" or k.startswith("sm_magic.")}
    print(json.dumps(report))
""")


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=kwargs.pop("timeout", RUN_TIMEOUT),
                         **kwargs)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} exited {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out


def _source_files() -> list[str]:
    """The repository's files as a clean clone plus the new files would have them: tracked and
    untracked, without what .gitignore names (build/, *.egg-info, __pycache__, .venv, ...)."""
    out = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO)
    return sorted(p for p in out.stdout.split("\0") if p and (REPO / p).is_file())


def _module_name(member: str) -> str:
    """sm_magic/backends/local/backend.py -> sm_magic.backends.local.backend; sm_magic/widgets/__init__.py -> sm_magic.widgets"""
    parts = member[:-len(".py")].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class Built:
    def __init__(self, wheel: Path, source: Path, files: list[str]):
        self.wheel, self.source = wheel, source
        self.package_files = {f for f in files if f.startswith(PACKAGE + "/")}
        with zipfile.ZipFile(wheel) as z:
            self.members = z.namelist()

    def read(self, member: str) -> bytes:
        with zipfile.ZipFile(self.wheel) as z:
            return z.read(member)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    """The wheel, built from a copy of the repository's files (a build in the working tree would
    write build/ and *.egg-info there, and setuptools puts what an earlier build left in build/lib
    into the next wheel). pip uses the development virtualenv's setuptools: no network."""
    root = tmp_path_factory.mktemp("wheel")
    source, dist = root / "source", root / "dist"
    files = _source_files()
    for f in files:
        (source / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, source / f)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "--disable-pip-version-check", "-w", dist, source], cwd=root, timeout=BUILD_TIMEOUT)
    wheels = sorted(dist.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return Built(wheels[0], source, files)


def test_the_wheel_holds_every_file_of_the_package_and_nothing_else(built):
    package = {m for m in built.members if m.startswith(PACKAGE + "/")}
    assert built.package_files, "no sm_magic/ files found in the repository"
    assert sorted(built.package_files - package) == [], "files of the package the wheel leaves out"
    assert sorted(package - built.package_files) == [], "files in the wheel that the package does not have"
    # Every module, and the runtime the bundle copies into each job (sm_entry.py, runtime.py, ...),
    # byte for byte as in the source that was built.
    for member in sorted(package):
        assert built.read(member) == (built.source / member).read_bytes(), member
    for carried in ("sm_magic/container/entry.py", "sm_magic/container/runtime.py", "sm_magic/container/failure.py"):
        assert carried in package
    # Nothing else: no tests/, no helpers, only the package and its metadata.
    tops = {m.split("/")[0] for m in built.members}
    dist_info = tops - {PACKAGE}
    assert len(dist_info) == 1 and next(iter(dist_info)).endswith(".dist-info"), sorted(tops)
    (dist_info,) = dist_info
    assert dist_info == f"{PACKAGE}-{PYPROJECT['project']['version']}.dist-info"
    entry_points = built.read(f"{dist_info}/entry_points.txt").decode()
    for command, target in PYPROJECT["project"]["scripts"].items():
        assert f"{command} = {target}" in entry_points


def _dev_sites() -> list[str]:
    """The development virtualenv's site-packages (the editable sm_magic is a .pth file there)."""
    return list(dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib")))


def _fresh_venv(root: Path, built: Built) -> tuple[Path, Path]:
    """A new virtualenv with the wheel installed (pip run for it: `pip --python`), then given the
    development virtualenv's third-party packages through a .pth file. Returns (venv, its
    site-packages)."""
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    assert site.is_relative_to(venv)
    # Installed before the .pth is written: pip sees an empty environment (not the development
    # virtualenv's record of the editable sm_magic, which it would take as installed already).
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
          "--disable-pip-version-check", built.wheel])
    dev_sites = _dev_sites()
    assert all(Path(d).resolve() != REPO and not REPO.is_relative_to(Path(d).resolve()) for d in dev_sites)
    (site / "_sm_magic_test_dev_packages.pth").write_text("".join(d + "\n" for d in dev_sites), encoding="utf-8")
    return venv, site


def _isolated_env(home: Path, venv: Path) -> dict[str, str]:
    """The user's environment with nothing that points Python at the repository or the
    development virtualenv; sm_env has set the registry and jobs directory (under tmp_path)."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONSAFEPATH", "VIRTUAL_ENV"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    dev_bin = Path(sys.executable).parent
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p) != dev_bin]
    env.update(PATH=os.pathsep.join([str(venv / "bin"), *path]), VIRTUAL_ENV=str(venv),
               HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local" / "share"), SM_MAGIC_CACHE=str(home / ".cache" / "sm_magic"),
               PYTHONNOUSERSITE="1")
    assert env["SM_MAGIC_JOBS_DIR"] and env["SM_MAGIC_REGISTRY"] and env["HF_HOME"]  # from sm_env
    return env


def test_a_job_runs_from_the_wheel_installed_in_a_fresh_virtualenv(built, sm_env):
    outside = sm_env  # the cwd: a temporary directory, so the repository's sm_magic/ is on no path
    assert not outside.resolve().is_relative_to(REPO)
    venv, site = _fresh_venv(outside / "fresh", built)
    installed = site / PACKAGE

    # Every module of the install gets a mark: a bundled runtime file that carries it was copied
    # from the install, not from the repository.
    mark = f"\n# installed from the wheel ({uuid.uuid4().hex})\n"
    for module in installed.rglob("*.py"):
        with open(module, "a", encoding="utf-8") as f:
            f.write(mark)

    home = outside / "home"
    home.mkdir()
    env = _isolated_env(home, venv)
    (outside / "driver.py").write_text(DRIVER, encoding="utf-8")
    (outside / "job_script.py").write_text(JOB_SCRIPT, encoding="utf-8")
    name = "from-the-wheel"
    out = _run([venv / "bin" / "python", "driver.py", "job_script.py", name, JOB_TIMEOUT], cwd=outside, env=env)
    report = json.loads(out.stdout.strip().splitlines()[-1])

    # The driver ran the fresh virtualenv's python, with the wheel's sm_magic and nothing of the
    # repository: no path into it and no editable-install finder.
    assert Path(report["prefix"]) == venv
    assert Path(report["file"]) == installed / "__init__.py"
    assert Path(report["dist_file"]) == installed / "__init__.py"  # importlib.metadata finds the wheel's first
    dev_sites = {Path(d) for d in _dev_sites()}
    assert not [p for p in report["path"] if Path(p).resolve().is_relative_to(REPO) and Path(p) not in dev_sites], report["path"]
    assert [p for p in report["path"] if (Path(p) / PACKAGE).exists()] == [str(site)], report["path"]
    assert not [f for f in report["meta_path"] if "editable" in f.lower()], report["meta_path"]
    # Every module of the wheel imports from the install, and every sm_magic module the job used came from it.
    expected = {_module_name(m) for m in built.members if m.startswith(PACKAGE + "/") and m.endswith(".py")}
    assert set(report["modules"]) == expected - {PACKAGE}
    for module, file in {**report["modules"], **report["loaded"]}.items():
        assert file and Path(file).is_relative_to(installed), (module, file)

    # The job completed, and its log shows the script's output, run by the same interpreter.
    job_dir = Path(env["SM_MAGIC_JOBS_DIR"]) / name
    bundle = job_dir / "bundle"
    assert report["status"] == "Completed", report["logs"]
    logs = report["logs"]
    assert "epoch 2: {'accuracy': 0.7" in logs, logs
    assert f"prefix: {venv}\n" in logs, logs
    assert f"runtime: {bundle / PACKAGE / 'runtime.py'}\n" in logs, logs
    assert "epoch 2: {'accuracy': 0.7" in (job_dir / "logs" / "algo-1.log").read_text(encoding="utf-8")

    # The bundled runtime is the install's: each file the bundle carries is an installed module
    # (with the mark), and without the mark it is the wheel's file.
    # The bundle's sm_magic/__init__.py is its own: the install's imports what a container lacks.
    carried = {f"{PACKAGE}/container/entry.py": bundle / "sm_entry.py",
               **{f"{PACKAGE}/{p.relative_to(bundle / PACKAGE).as_posix()}": p for p in (bundle / PACKAGE).rglob("*.py")
                  if p != bundle / PACKAGE / "__init__.py"}}
    assert {f"{PACKAGE}/{m}" for m in ("container/entry.py", "runtime.py", "container/runtime.py", "container/failure.py",
                                       "container/failure_board.py")} <= set(carried), sorted(carried)
    for member, path in carried.items():
        text = path.read_bytes()
        assert text == (site / member).read_bytes(), f"{path.relative_to(bundle)} is not the installed {member}"
        assert text.endswith(mark.encode()) and text[:-len(mark)] == built.read(member), member

    # The console script was installed with the wheel and lists the job.
    command = venv / "bin" / "sm-magic"
    assert command.read_text(encoding="utf-8").splitlines()[0] == f"#!{venv / 'bin' / 'python'}"
    listing = _run([command, "jobs"], cwd=outside, env=env).stdout
    assert [l.split()[:3] for l in listing.splitlines() if l.split()[:1] == [name]] == [[name, "local", "Completed"]], listing
