"""What a bundle may hold: regular files from inside the code only (a link out of it is refused,
never read or written through), never a file that may hold secrets, nothing `.smignore` names,
and no credential-shaped string. Real git repositories, links, fifos and bundles; no mocks."""

import json
import os
import signal
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest

import sm_magic
from sm_magic.bundle.build import BundleCode, BundleError, JobSpec, build_bundle
from sm_magic.bundle.smignore import IgnoreRules
from sm_magic.cli.export import ExportError, export_notebook, launch_bundle
from sm_magic.config.credentials import credentials_in_text, find_credentials
from sm_magic.config.model import TrainConfig
from sm_magic.plan import planner as api
from sm_magic.plan.planner import LaunchError

from helpers.gitrepos import git

CELL = "import helper\nprint('cell ran', helper.WORD)\n"
# Credential-shaped strings, made here so that this file itself holds none verbatim.
AWS_KEY = "AKIA" + "IOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
CREDENTIALS = f"[default]\naws_access_key_id = {AWS_KEY}\naws_secret_access_key = {AWS_SECRET}\n"
PRIVATE_KEY = "-----BEGIN OPENSSH " + "PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END\n"


def make_repo(path: Path, files: dict, links: dict = {}) -> str:
    """A git repository with `files` (name -> text) and symlinks (name -> target), committed."""
    path.mkdir(parents=True)
    git(path, "init", "-q")
    for name, text in {"helper.py": "WORD = 'from-repo'\n", **files}.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    for name, target in links.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path / name)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "files")
    return path.as_uri()


def _no_links(bundle: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(bundle):
        for name in dirnames + filenames:
            assert not os.path.islink(os.path.join(dirpath, name)), f"{name} is a link in the bundle"


def _files(bundle: Path) -> set:
    return {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}


def _nothing_holds(root: Path, secret: bytes, but: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink() and not p.is_relative_to(but):
            assert secret not in p.read_bytes(), f"{p} holds the secret"


def _nothing_left(sm_env: Path, tmp_dir: Path) -> None:
    assert list(tmp_dir.iterdir()) == [], "a temporary checkout or bundle was left behind"
    jobs = sm_env / "sm_jobs"
    assert not jobs.exists() or list(jobs.iterdir()) == []


def _launched_bundle(sm_env: Path, job) -> Path:
    return sm_env / "sm_jobs" / job.name / "bundle"


@contextmanager
def _deadline(seconds: int):
    """A test that would hang (opening a fifo) fails instead."""
    def fail(*_):
        raise TimeoutError(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def outside(sm_env):
    """Files outside every repository, which a link in one points at."""
    out = sm_env / "outside"
    out.mkdir()
    (out / "train.py").write_text("print('the real train.py outside the repository')\n")
    (out / "requirements.txt").write_text("outside-package==1.0\n")
    return out


def _notebook(path: Path, line: str, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"%%sagemaker_train {line}\n{body}")]
    nbformat.write(nb, path)
    return path


# --- links ----------------------------------------------------------------------------------------

def test_links_out_of_a_repository_are_refused_and_nothing_is_written_through_them(sm_env, tmp_dir, outside):
    url = make_repo(sm_env / "repo", {}, {"train.py": str(outside / "train.py"),
                                          "requirements.txt": str(outside / "requirements.txt")})
    before = {p.name: p.read_bytes() for p in outside.iterdir()}

    refusals = []
    with pytest.raises(BundleError) as e:
        api.dry_run(CELL, git_repo=url, backend="local")
    refusals.append(str(e.value))
    with pytest.raises(BundleError) as e:
        sm_magic.launch(CELL, git_repo=url, backend="local")
    refusals.append(str(e.value))
    nb = _notebook(sm_env / "nb.ipynb", f"--git-repo {url}", CELL)
    with pytest.raises(BundleError) as e:
        export_notebook(nb, sm_env / "exported")
    refusals.append(str(e.value))
    for message in refusals:
        assert f"requirements.txt (a link to {outside / 'requirements.txt'}, outside the code)" in message
        assert f"train.py (a link to {outside / 'train.py'}, outside the code)" in message
        assert "Nothing was written or launched" in message and ".smignore" in message

    # With a blank cell the repository's own train.py is the entry: refused as it is looked at.
    with pytest.raises(LaunchError, match=r"train\.py in .* is a link out of the repository"):
        api.dry_run(None, git_repo=url, backend="local")

    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before
    assert not (sm_env / "exported").exists()
    _nothing_left(sm_env, tmp_dir)


def test_a_link_to_credentials_is_refused_and_their_content_goes_nowhere(sm_env, tmp_dir):
    home_aws = sm_env / "home" / ".aws"
    home_aws.mkdir(parents=True)
    (home_aws / "credentials").write_text(CREDENTIALS)
    url = make_repo(sm_env / "repo", {}, {"creds": str(home_aws / "credentials")})

    with pytest.raises(BundleError) as e:
        sm_magic.launch(CELL, git_repo=url, backend="local")
    assert f"creds (a link to {home_aws / 'credentials'}, outside the code)" in str(e.value)
    assert AWS_KEY not in str(e.value) and AWS_SECRET not in str(e.value)
    _nothing_left(sm_env, tmp_dir)
    _nothing_holds(sm_env, AWS_SECRET.encode(), but=sm_env / "home")


@pytest.mark.jobs
def test_links_inside_the_code_are_copied_as_the_files_they_point_to(sm_env, tmp_dir):
    cell = ("import json, os, pkglink.util\nhere = os.path.dirname(os.path.abspath(__file__))\n"
            "print('config', json.load(open(os.path.join(here, 'config.json'))), pkglink.util.WORD)\n")
    url = make_repo(sm_env / "repo", {"data/config.json": '{"lr": 0.5}\n', "pkg/__init__.py": "",
                                      "pkg/util.py": "WORD = 'util-via-link'\n"},
                    {"config.json": "data/config.json", "pkglink": "pkg", "train.py": "pkg/util.py"})

    job = sm_magic.launch(cell, git_repo=url, backend="local", wait=True)

    assert "config {'lr': 0.5} util-via-link" in job.logs()
    bundle = _launched_bundle(sm_env, job)
    _no_links(bundle)
    assert (bundle / "config.json").read_text() == '{"lr": 0.5}\n'
    assert (bundle / "pkglink" / "util.py").read_text() == "WORD = 'util-via-link'\n"
    # train.py was a link to pkg/util.py: the cell replaced the bundle's copy, not the file it named.
    assert (bundle / "train.py").read_text() == cell
    assert (bundle / "pkg" / "util.py").read_text() == "WORD = 'util-via-link'\n"
    assert list(tmp_dir.iterdir()) == []


def test_broken_links_link_loops_and_fifos_are_refused_naming_each_without_hanging(sm_env, tmp_dir):
    tree = sm_env / "code"
    (tree / "sub").mkdir(parents=True)
    (tree / "helper.py").write_text("WORD = 'x'\n")
    os.mkfifo(tree / "sub" / "pipe")
    os.symlink("gone.txt", tree / "old")
    os.symlink("..", tree / "sub" / "up")
    with _deadline(20):
        with pytest.raises(BundleError) as e:
            api.dry_run(CELL, tree=tree, backend="local")
    message = str(e.value)
    assert "old (a broken link to gone.txt)" in message
    assert "sub/pipe (a named pipe (fifo))" in message
    assert "sub/up (a link that loops back to a directory holding it)" in message
    _nothing_left(sm_env, tmp_dir)

    # What .smignore names is not looked at: the same tree then builds.
    (tree / ".smignore").write_text("sub/\nold\n")
    with _deadline(20):
        bundle = build_bundle(BundleCode(CELL, tree=tree), JobSpec(TrainConfig(), [], name="j"), dest=sm_env / "b")
    assert _files(bundle.path) >= {"helper.py", "train.py"} and not (bundle.path / "sub").exists()
    assert not (bundle.path / ".smignore").exists()


@pytest.mark.jobs  # launches a real local job to read the bundle it was given
def test_an_included_directory_skips_what_cannot_be_bundled_with_one_warning(sm_env, tmp_dir, capsys):
    home_aws = sm_env / "home" / ".aws"
    home_aws.mkdir(parents=True)
    (home_aws / "credentials").write_text(CREDENTIALS)
    lib = sm_env / "mylib"
    lib.mkdir()
    (lib / "__init__.py").write_text("")
    (lib / "ok.py").write_text("WORD = 'ok'\n")
    (lib / "data.txt").write_text("in-tree\n")
    os.symlink(home_aws / "credentials", lib / "creds")
    os.symlink("data.txt", lib / "alias.txt")
    os.symlink("missing.py", lib / "broken.py")
    os.mkfifo(lib / "pipe")

    with _deadline(20):
        job = sm_magic.launch("import mylib.ok\nprint(mylib.ok.WORD)\n", include=[str(lib)], backend="local")

    out = capsys.readouterr().out
    warnings = [l for l in out.splitlines() if "skipped what a bundle cannot hold" in l]
    assert warnings == [f"sm_magic: --include {lib}: skipped what a bundle cannot hold (links out of it, broken "
                        f"links, special files): mylib/broken.py (a broken link to missing.py), mylib/creds (a link "
                        f"to {home_aws / 'credentials'}, outside mylib), mylib/pipe (a named pipe (fifo))"]
    bundle = _launched_bundle(sm_env, job)
    _no_links(bundle)
    assert {f for f in _files(bundle) if f.startswith("mylib/")} == {
        "mylib/__init__.py", "mylib/ok.py", "mylib/data.txt", "mylib/alias.txt"}
    _nothing_holds(sm_env, AWS_SECRET.encode(), but=sm_env / "home")
    assert list(tmp_dir.iterdir()) == []


def test_an_exported_bundle_with_a_link_added_is_refused_when_run(sm_env, tmp_dir, outside):
    nb = _notebook(sm_env / "nb.ipynb", "--name plain", "print('plain')\n")
    [exported] = export_notebook(nb, sm_env / "exported")
    os.symlink(outside / "train.py", exported / "evil.py")
    with pytest.raises(ExportError, match=r"evil\.py \(a link to .*, outside the bundle directory\)"):
        launch_bundle(exported, backend="local")
    _nothing_left(sm_env, tmp_dir)


# --- files that may hold secrets, .smignore ---------------------------------------------------------

SECRET_FILES = {".env": f"AWS_ACCESS_KEY_ID={AWS_KEY}\n", ".env.local": "TOKEN=1\n", ".envrc": "export A=1\n",
                ".aws/credentials": CREDENTIALS, "deploy/.ssh/id_ed25519": PRIVATE_KEY, "id_rsa": PRIVATE_KEY,
                "certs/server.pem": PRIVATE_KEY, ".netrc": "machine h login u password p\n",
                ".git-credentials": "https://u:p@host\n"}
KEPT_FILES = {"id_mapping.py": "IDS = {}\n", "id_rsa.pub": "ssh-ed25519 AAAA user@host\n",
              "environment.py": "ENV = 'prod'\n", "certs/README.md": "certificates\n"}


@pytest.mark.jobs  # launches a real local job to read the bundle it was given
@pytest.mark.parametrize("with_include", [False, True], ids=["repo", "repo-and-include-dir"])
def test_files_that_may_hold_secrets_are_left_out_with_one_note(sm_env, tmp_dir, capsys, with_include):
    url = make_repo(sm_env / "repo", {**SECRET_FILES, **KEPT_FILES}, {"aws_link": ".aws/credentials"})
    include = []
    if with_include:
        lib = sm_env / "mylib"
        for name, text in {"__init__.py": "", "id_utils.py": "X = 1\n", ".env": "T=2\n",
                           "id_ed25519": PRIVATE_KEY}.items():
            (lib / name).parent.mkdir(parents=True, exist_ok=True)
            (lib / name).write_text(text)
        include = [str(lib)]

    job = sm_magic.launch(CELL, git_repo=url, include=include, backend="local")

    notes = [l for l in capsys.readouterr().out.splitlines() if "left out of the bundle" in l]
    listed = (".aws/, .env, .env.local, .envrc, .git-credentials, .netrc, aws_link, certs/server.pem, "
              "deploy/.ssh/, id_rsa" + (", mylib/.env, mylib/id_ed25519" if with_include else ""))
    assert notes == [f"sm_magic: left out of the bundle (may hold secrets): {listed} (sm_magic never bundles "
                     "such files; read secrets from the environment in the job)"]
    files = _files(_launched_bundle(sm_env, job))
    assert set(KEPT_FILES) <= files and "helper.py" in files
    assert not any(f.startswith((".env", ".aws", "deploy/", "certs/server", "id_rsa", ".netrc", ".git-cred",
                                 "aws_link", "mylib/.env", "mylib/id_ed")) for f in files if f != "id_rsa.pub")
    if with_include:
        assert {"mylib/__init__.py", "mylib/id_utils.py"} <= files
    _nothing_holds(_launched_bundle(sm_env, job), AWS_KEY.encode(), but=sm_env / "none")
    assert list(tmp_dir.iterdir()) == []


def test_smignore_leaves_out_what_it_names_in_gitignore_syntax(sm_env, tmp_dir):
    tree = sm_env / "code"
    names = ["helper.py", "data/big.bin", "src/data/nested.bin", "model.ckpt", "keep.ckpt", "top.txt",
             "src/top.txt", "a/scratch/b/c.txt", "a/d.txt", "notes/x.md", "notes/keep.md", "#hash.py"]
    for name in names:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("x\n")
    (tree / ".smignore").write_text("# comment\n\ndata/\n*.ckpt\n!keep.ckpt\n/top.txt\n**/scratch/**\n"
                                    "notes/*\n!notes/keep.md\n\\#hash.py\n")

    bundle = build_bundle(BundleCode(CELL, tree=tree), JobSpec(TrainConfig(), [], name="j"), dest=sm_env / "b")

    assert {f for f in _files(bundle.path) if f in names} == {
        "helper.py", "keep.ckpt", "src/top.txt", "a/d.txt", "notes/keep.md"}
    assert not (bundle.path / ".smignore").exists()


@pytest.mark.parametrize("pattern, path, is_dir, ignored", [
    ("*.log", "a/b/x.log", False, True),
    ("/x.log", "a/x.log", False, False),
    ("build/", "build", False, False),          # a directory pattern does not name a file
    ("build/", "src/build", True, True),
    ("docs/*.md", "docs/a.md", False, True),
    ("docs/*.md", "docs/sub/a.md", False, False),
    ("a/**/z", "a/z", True, True),
    ("a/**/z", "a/b/c/z", False, True),
    ("**/cache", "x/cache", True, True),
    ("[0-9]*.csv", "1.csv", False, True),
    ("[!0-9]*.csv", "1.csv", False, False),
    ("?.py", "ab.py", False, False),
])
def test_ignore_rules_follow_gitignore(pattern, path, is_dir, ignored):
    assert IgnoreRules([pattern]).match(path, is_dir) is ignored


# --- credentials in the code --------------------------------------------------------------------------

def test_a_cell_with_an_aws_key_is_refused_naming_the_line_but_not_the_key(sm_env, tmp_dir):
    cell = f"import os\nKEY = '{AWS_KEY}'\nprint(KEY)\n"
    with pytest.raises(BundleError) as e:
        api.dry_run(cell, backend="local")
    message = str(e.value)
    assert "train.py line 2: an AWS access key id" in message
    assert AWS_KEY not in message and AWS_KEY[4:] not in message
    assert "read them from the environment" in message and ".smignore" in message
    _nothing_left(sm_env, tmp_dir)


def test_a_file_with_a_private_key_is_refused_until_smignore_names_it(sm_env, tmp_dir):
    tree = sm_env / "code"
    (tree / "conf").mkdir(parents=True)
    (tree / "helper.py").write_text("WORD = 'x'\n")
    (tree / "conf" / "deploy.py").write_text(f'"""deploy"""\n\nKEY = """{PRIVATE_KEY}"""\n')
    with pytest.raises(BundleError, match=r"conf/deploy\.py line 3: a private key") as e:
        build_bundle(BundleCode(CELL, tree=tree), JobSpec(TrainConfig(), [], name="j"), dest=sm_env / "b")
    assert "b3BlbnNzaC1rZXkt" not in str(e.value)
    assert not (sm_env / "b").exists() and list(sm_env.glob(".b.staging-*")) == []

    (tree / ".smignore").write_text("conf/deploy.py\n")
    bundle = build_bundle(BundleCode(CELL, tree=tree), JobSpec(TrainConfig(), [], name="j"), dest=sm_env / "b")
    assert not (bundle.path / "conf" / "deploy.py").exists()


def test_a_token_in_the_requirements_is_refused_once(sm_env, tmp_dir):
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    tree = sm_env / "code"
    tree.mkdir()
    (tree / "helper.py").write_text("WORD = 'x'\n")
    (tree / "requirements.txt").write_text(f"tqdm\nprivate @ git+https://{token}@github.com/org/private.git\n")
    with pytest.raises(BundleError) as e:
        build_bundle(BundleCode(CELL, tree=tree), JobSpec(TrainConfig(), [], name="j"), dest=sm_env / "b")
    message = str(e.value)
    assert message.count("requirements.txt line 2: a GitHub token") == 1 and token not in message
    assert not (sm_env / "b").exists()
    _nothing_left(sm_env, tmp_dir)


@pytest.mark.parametrize("text, kind", [
    (f"key = '{AWS_KEY}'", "an AWS access key id"),
    ("k = 'ASIA" + "Y34FZKBOKMUTVV7A'", "an AWS access key id"),
    (f'os.environ["AWS_SECRET_ACCESS_KEY"] = "{AWS_SECRET}"', "an AWS secret access key"),
    (f"aws_secret_access_key: {AWS_SECRET}", "an AWS secret access key"),
    ('{"private_key": "-----BEGIN ' + 'PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC"}', "a private key"),
    ("t = 'ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8'", "a GitHub token"),
    ("t = 'github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuv'", "a GitHub token"),
    ("login(token='hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh')", "a Hugging Face token"),
    ("SLACK = 'xoxb-" + "1234567890-abcdefABCDEF'", "a Slack token"),
])
def test_credential_shapes_are_found(text, kind):
    assert credentials_in_text("f.py", f"# first line\n{text}\n") == [f"f.py line 2: {kind}"]


@pytest.mark.parametrize("text", [
    "from huggingface_hub import hf_hub_download, hf_hub_url",
    "from sklearn import datasets  # sk-learn",
    "KEY = 'AKIAXXXXXXXXXXXXXXXX'  # a placeholder",
    "aws_secret_access_key = os.environ['AWS_SECRET_ACCESS_KEY']",
    "sha = '3f786850e387550fdab836ed7e6dc881de23001b'",
    "if pem.startswith('-----BEGIN RSA PRIVATE KEY-----'):",
    "name = 'hf_modelnameforsequenceclassificationtask'",
])
def test_ordinary_code_is_not_taken_for_credentials(text):
    assert credentials_in_text("f.py", text) == []


def test_the_bundles_own_files_hold_no_credentials(sm_env, tmp_path):
    bundle = build_bundle(BundleCode("import math\nprint(math.pi)\n"),
                          JobSpec(TrainConfig(), ["--token-file", "t"], name="j"), dest=tmp_path / "b")
    assert find_credentials(bundle.path) == []
    spec = json.loads((bundle.path / "sm_launch.json").read_text())
    assert spec["script"] == "train.py"
