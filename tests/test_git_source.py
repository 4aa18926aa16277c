"""Scripts from git: real repositories made with `git init` in tmp dirs, fetched through file
URLs (and once through git's own smart-HTTP server with credentials in the URL), run on the
local backend. No mocks."""

import base64
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from IPython.core.error import UsageError

import sm_magic
from sm_magic.bundle import git_source
from sm_magic.jobs.registry import Registry
from sm_magic.plan import planner as api
from sm_magic.plan.planner import LaunchError

from helpers.gitrepos import Repo
from helpers.jobscripts import script


@pytest.fixture
def repo(sm_env, tmp_dir):
    return Repo(sm_env / "repos" / "proj")


def _bundle(sm_env, job) -> Path:
    return sm_env / "sm_jobs" / job.name / "bundle"


def _git_origin(sm_env, job) -> dict:
    spec = json.loads((_bundle(sm_env, job) / "sm_launch.json").read_text())
    record = Registry().get(job.name)
    assert record.extra["git"] == spec["origin"]["git"]
    return spec["origin"]["git"]


def _nothing_left(sm_env, tmp_dir) -> None:
    assert list(tmp_dir.iterdir()) == [], "a temporary checkout or bundle was left behind"
    jobs = sm_env / "sm_jobs"
    assert not jobs.exists() or list(jobs.iterdir()) == []
    assert Registry().list() == []


@pytest.mark.jobs
def test_branch_head_runs_with_its_helper_module_and_requirements(sm_env, tmp_dir, repo):
    job = sm_magic.launch(None, git_repo=repo.url, git_branch="exp", args=["--epochs", "1"], wait=True)

    assert job.status == "Completed"
    assert "entry=exp-train.py helper=exp" in job.logs()
    bundle = _bundle(sm_env, job)
    assert (bundle / "helper.py").read_text() == 'VERSION = "exp"\n'
    assert (bundle / "src" / "util.py").is_file()
    assert not (bundle / ".git").exists()
    requirements = (bundle / "requirements.txt").read_text().splitlines()
    # The repository's own requirements, and accelerate, which the entry command runs.
    assert requirements[0] == "tqdm>=4" and requirements[-1].startswith("accelerate==")
    assert _git_origin(sm_env, job) == {"url": repo.url, "commit": repo.exp, "branch": "exp"}
    assert list(tmp_dir.iterdir()) == []


@pytest.mark.jobs
def test_a_commit_older_than_the_branch_head_runs_its_own_code(sm_env, tmp_dir, repo):
    job = sm_magic.launch(None, git_repo=repo.url, git_commit=repo.first, wait=True)

    assert "entry=train.py helper=main-1" in job.logs()  # main's head says main-2
    assert (_bundle(sm_env, job) / "helper.py").read_text() == 'VERSION = "main-1"\n'
    assert _git_origin(sm_env, job) == {"url": repo.url, "commit": repo.first, "branch": None}
    assert list(tmp_dir.iterdir()) == []


def test_abbreviated_commit_tag_and_default_branch_resolve_to_full_shas(sm_env, tmp_dir, repo):
    text = api.dry_run(None, git_repo=repo.url, git_commit=repo.first[:8])
    assert f"Code: git {repo.url} at commit {repo.first} (pinned commit); entry script train.py" in text
    text = api.dry_run(None, git_repo=repo.url, git_branch="v1")
    assert f"Code: git {repo.url} at commit {repo.first} (tag v1); entry script train.py" in text
    text = api.dry_run(None, git_repo=repo.url)
    assert f"at commit {repo.second} (branch main)" in text
    assert "helper.py" in text.split("Bundle files: ")[1]
    _nothing_left(sm_env, tmp_dir)  # a dry run writes nothing


@pytest.mark.jobs
def test_a_cell_body_replaces_the_entry_script_and_imports_the_repos_modules(sm_env, tmp_dir, repo):
    cell = script("""
        import helper
        print(f"entry=cell helper={helper.VERSION}")
    """)
    job = sm_magic.launch(cell, git_repo=repo.url, git_branch="main", wait=True)

    assert "entry=cell helper=main-2" in job.logs()
    assert (_bundle(sm_env, job) / "train.py").read_text() == cell
    assert _git_origin(sm_env, job)["commit"] == repo.second


@pytest.mark.jobs
def test_entry_in_a_subdirectory_imports_its_neighbours(sm_env, tmp_dir, repo):
    job = sm_magic.launch(None, git_repo=repo.url, git_commit=repo.second, entry="src/run.py", wait=True)

    assert "entry=src/run.py util=from-src" in job.logs()
    spec = json.loads((_bundle(sm_env, job) / "sm_launch.json").read_text())
    assert spec["script"] == "src/run.py" and spec["origin"]["git"]["commit"] == repo.second
    assert list(tmp_dir.iterdir()) == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(git_branch="nope"), r"branch 'nope' not found in file://.*; its branches: exp, main"),
    (dict(git_commit="0123456789abcdef0123456789abcdef01234567"),
     r"commit 0123456789abcdef0123456789abcdef01234567 not found in file://.*searched every branch and tag"),
    (dict(git_commit="deadbee"), r"commit deadbee not found"),
    (dict(git_commit="main"), r"--git-commit 'main' is not a commit SHA .*use --git-branch"),
    (dict(git_branch="main", git_commit="abc1234"), r"give --git-branch or --git-commit, not both"),
    (dict(entry="missing.py"),
     r"no entry script missing.py in file://.* at commit [0-9a-f]{12} \(Python files at its top level: "
     r"helper.py, train.py\); name the script with --entry PATH"),
    (dict(entry="../outside.py"), r"--entry '../outside.py': give a .py path relative to the repository"),
])
def test_refused_git_launches_say_why_and_leave_nothing_behind(sm_env, tmp_dir, repo, kwargs, message):
    with pytest.raises(LaunchError, match=message):
        sm_magic.launch(None, git_repo=repo.url, **kwargs)
    _nothing_left(sm_env, tmp_dir)


@pytest.mark.parametrize("kwargs, message", [
    (dict(git_branch="main"), r"--git-branch needs --git-repo URL"),
    (dict(git_commit="abc1234"), r"--git-commit needs --git-repo URL"),
    (dict(git_branch="main", entry="train.py"), r"--git-branch and --entry need --git-repo URL"),
])
def test_git_flags_without_a_repository_are_refused(sm_env, tmp_dir, kwargs, message):
    with pytest.raises(LaunchError, match=message):
        sm_magic.launch("print(1)\n", **kwargs)
    _nothing_left(sm_env, tmp_dir)


def test_unreadable_repository_shows_gits_reason(sm_env, tmp_dir):
    missing = sm_env / "no-such-repo"
    with pytest.raises(LaunchError, match=rf"cannot read repository {missing.as_uri()}: "
                                          rf"'{missing}' does not appear to be a git repository"):
        sm_magic.launch(None, git_repo=missing.as_uri())
    _nothing_left(sm_env, tmp_dir)


def test_missing_git_is_a_clear_error(sm_env, tmp_dir, repo, monkeypatch):
    empty = sm_env / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(LaunchError, match=r"git is not installed \(no `git` command on PATH\)"):
        sm_magic.launch(None, git_repo=repo.url)
    _nothing_left(sm_env, tmp_dir)


def test_entry_with_a_syntax_error_is_refused_before_launch(sm_env, tmp_dir, repo):
    repo.write("broken.py", "def f(:\n    pass\n")
    sha = repo.commit("broken")
    with pytest.raises(LaunchError, match=rf"syntax error in broken.py of .* at commit {sha[:12]}, line 1"):
        sm_magic.launch(None, git_repo=repo.url, entry="broken.py")
    _nothing_left(sm_env, tmp_dir)


def test_a_repository_with_sm_magics_own_file_names_is_refused(sm_env, tmp_dir, repo):
    repo.write("sm_entry.py", "print('mine')\n")
    repo.commit("clash")
    with pytest.raises(LaunchError, match=r"file://.* has its own top-level sm_entry.py, which sm_magic writes"):
        sm_magic.launch(None, git_repo=repo.url)
    _nothing_left(sm_env, tmp_dir)


def test_strip_credentials():
    strip = git_source.strip_credentials
    assert strip("https://user:s3cret@github.com/org/r.git") == "https://github.com/org/r.git"
    assert strip("https://ghp_token@github.com/org/r.git") == "https://github.com/org/r.git"
    assert strip("http://u:p@127.0.0.1:8080/r.git") == "http://127.0.0.1:8080/r.git"
    assert strip("ssh://git@host/org/r.git") == "ssh://git@host/org/r.git"
    assert strip("ssh://git:pw@host/org/r.git") == "ssh://git@host/org/r.git"
    assert strip("git@github.com:org/r.git") == "git@github.com:org/r.git"
    assert strip("file:///tmp/r") == "file:///tmp/r"
    assert strip("/tmp/r") == "/tmp/r"


# --- over HTTP, with credentials in the URL: git's own http-backend behind Basic auth -----------

class _GitHTTP(BaseHTTPRequestHandler):
    root: Path
    auth: str
    requests: list

    def do_GET(self):
        self._serve()

    def do_POST(self):
        self._serve()

    def _serve(self):
        self.requests.append(self.path)
        if self.headers.get("Authorization") != "Basic " + base64.b64encode(self.auth.encode()).decode():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = dict(os.environ, GIT_PROJECT_ROOT=str(self.root), GIT_HTTP_EXPORT_ALL="1", PATH_INFO=path,
                   QUERY_STRING=query, REQUEST_METHOD=self.command, REMOTE_USER=self.auth.split(":")[0],
                   REMOTE_ADDR="127.0.0.1", CONTENT_TYPE=self.headers.get("Content-Type", ""),
                   CONTENT_LENGTH=str(len(body)), GIT_PROTOCOL=self.headers.get("Git-Protocol", ""),
                   HTTP_CONTENT_ENCODING=self.headers.get("Content-Encoding", ""))
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        headers = [l.split(":", 1) for l in head.decode().split("\r\n") if ":" in l]
        status = next((int(v.split()[0]) for k, v in headers if k.lower() == "status"), 200)
        self.send_response(status)
        for k, v in headers:
            if k.lower() != "status":
                self.send_header(k, v.strip())
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_repo(repo):
    handler = type("Handler", (_GitHTTP,), {"root": repo.path.parent, "auth": "alice:s3cret-t0ken", "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}/{repo.path.name}", handler
    server.shutdown()
    server.server_close()


@pytest.mark.jobs
def test_credentials_in_the_url_are_used_but_never_recorded(sm_env, tmp_dir, repo, http_repo):
    where, handler = http_repo
    job = sm_magic.launch(None, git_repo=f"http://alice:s3cret-t0ken@{where}", git_branch="exp", wait=True)

    assert "entry=exp-train.py helper=exp" in job.logs()
    assert _git_origin(sm_env, job) == {"url": f"http://{where}", "commit": repo.exp, "branch": "exp"}
    everything = [p for p in sm_env.rglob("*") if p.is_file() and "repos" not in p.parts]
    leaked = [p for p in everything if b"s3cret-t0ken" in p.read_bytes()]
    assert leaked == [], "the URL's credentials were written to disk"
    assert list(tmp_dir.iterdir()) == []
    assert any("git-upload-pack" in r for r in handler.requests)


def test_wrong_credentials_fail_at_once_without_a_prompt_or_the_secret(sm_env, tmp_dir, repo, http_repo):
    where, _ = http_repo
    with pytest.raises(LaunchError) as err:
        sm_magic.launch(None, git_repo=f"http://alice:wr0ng-secret@{where}")
    message = str(err.value)
    assert message.startswith(f"cannot read repository http://{where}: ")
    assert "wr0ng-secret" not in message and "alice" not in message
    _nothing_left(sm_env, tmp_dir)


# --- through the magic ----------------------------------------------------------------------------

@pytest.mark.jobs
def test_magic_with_a_blank_cell_runs_the_repos_entry_at_a_commit(ip, sm_env, tmp_dir, repo, capsys):
    ip.user_ns["repo_url"] = repo.url
    job = ip.run_cell_magic("sagemaker_train", f"--wait -o j --git-repo {{repo_url}} --git-commit {repo.first[:10]} "
                                               "-- --epochs 2", "\n  \n")
    assert ip.user_ns["j"] is job and job.status == "Completed"
    assert "entry=train.py helper=main-1 argv=['--epochs', '2']" in capsys.readouterr().out
    assert _git_origin(sm_env, job) == {"url": repo.url, "commit": repo.first, "branch": None}
    assert list(tmp_dir.iterdir()) == []


def test_magic_line_form_dry_run_and_errors(ip, sm_env, tmp_dir, repo, capsys):
    # A notebook cell holding only the magic line: IPython refuses a %% cell with no body and
    # points at the line form, which runs the repository's entry script.
    result = ip.run_cell(f"%%sagemaker_train --dry-run --git-repo {repo.url} --git-branch exp")
    assert "Did you mean the line magic %sagemaker_train (single %)?" in str(result.error_in_exec)
    ip.run_cell(f"%sagemaker_train --dry-run --git-repo {repo.url} --git-branch exp").raise_error()
    assert f"Code: git {repo.url} at commit {repo.exp} (branch exp); entry script train.py" in capsys.readouterr().out

    with pytest.raises(UsageError, match="branch 'gone' not found"):
        ip.run_line_magic("sagemaker_train", f"--git-repo {repo.url} --git-branch gone")
    with pytest.raises(UsageError, match="--git-branch needs --git-repo URL"):
        ip.run_cell_magic("sagemaker_train", "--git-branch main", "print(1)\n")
    with pytest.raises(UsageError, match="the cell is empty"):  # no repository: a blank cell is still empty
        ip.run_cell_magic("sagemaker_train", "", "\n")
    _nothing_left(sm_env, tmp_dir)
