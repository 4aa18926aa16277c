"""Code from a git repository: fetch it at a branch, a tag, a commit or the default branch into a
temporary checkout whose files become the job bundle (bundle/build.py copies them, without .git).

Runs the `git` command line (no Python git library). git never prompts for credentials here
(no terminal prompt, no askpass helper, ssh in batch mode): a repository that needs them must
get them from a credential helper or an ssh agent. A URL's embedded credentials
(`https://user:token@host/...`) are stripped from everything this module returns or says.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit, urlunsplit

from ..errors import UsageProblem

_SHA_RE = re.compile(r"^[0-9a-fA-F]{4,64}$")
_USERINFO_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")
_HINTS = 12  # names listed in a hint at most


class GitSourceError(UsageProblem, ValueError):
    """The repository, branch, commit or entry script cannot be used; the message says why."""


def strip_credentials(url: str) -> str:
    """The URL without embedded credentials: `https://user:token@host/r.git` -> `https://host/r.git`.
    An ssh user name (`ssh://git@host/...`, `git@host:org/r.git`) is kept: it is not a secret."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _USERINFO_RE.sub(r"\1", url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    keep = userinfo.split(":", 1)[0] + "@" if parts.scheme in ("ssh", "git+ssh", "ssh+git") else ""
    return urlunsplit(parts._replace(netloc=keep + host))


def redact(text: str, url: str) -> str:
    """`text` (git's own output) with the URL's credentials removed wherever they appear."""
    safe = strip_credentials(url)
    text = text.replace(url, safe)
    try:
        parts = urlsplit(url)
        secrets = [s for s in (parts.password, parts.username if parts.password is None else None) if s]
    except ValueError:
        secrets = []
    if safe != url:
        text = _USERINFO_RE.sub(r"\1", text)
        for secret in secrets:
            text = text.replace(secret, "***")
    return text


def check_options(git_repo: str | None, git_branch: str | None = None, git_commit: str | None = None,
                  entry: str | None = None) -> None:
    """The flags' combinations and forms, checked without touching the network or the disk."""
    if not git_repo:
        given = [flag for flag, value in (("--git-branch", git_branch), ("--git-commit", git_commit),
                                          ("--entry", entry)) if value]
        if given:
            raise GitSourceError(f"{' and '.join(given)} {'needs' if len(given) == 1 else 'need'} --git-repo URL: "
                                 "they choose what to run from a git repository")
        return
    if git_branch and git_commit:
        raise GitSourceError("give --git-branch or --git-commit, not both: a commit pins the code exactly, "
                             "a branch means its newest commit")
    if git_commit and not _SHA_RE.match(git_commit):
        raise GitSourceError(f"--git-commit {git_commit!r} is not a commit SHA (4 to 64 hex digits); "
                             "for a branch or tag use --git-branch")
    if entry is not None:
        check_entry_path(entry)


def check_entry_path(entry: str) -> str:
    path = PurePosixPath(entry.replace("\\", "/"))
    if not entry or path.is_absolute() or ".." in path.parts or path.suffix != ".py":
        raise GitSourceError(f"--entry {entry!r}: give a .py path relative to the repository's top directory, "
                             "e.g. train.py or src/train.py")
    return path.as_posix()


@dataclass
class Checkout:
    """A repository's files at one commit, in a temporary directory until `cleanup()`."""

    path: Path                       # the work tree (its .git is never bundled)
    url: str                         # credentials stripped
    commit: str                      # the full SHA
    branch: str | None = None     # the branch fetched (None for a commit pin or a tag)
    tag: str | None = None
    _root: Path | None = field(default=None, repr=False)

    def origin(self) -> dict:
        """What sm_launch.json and the job registry record about where the code came from."""
        git = {"url": self.url, "commit": self.commit, "branch": self.branch}
        if self.tag:
            git["tag"] = self.tag
        return {"git": git}

    def describe(self) -> str:
        ref = f"branch {self.branch}" if self.branch else f"tag {self.tag}" if self.tag else "pinned commit"
        return f"git {self.url} at commit {self.commit} ({ref})"

    def entry_source(self, entry: str) -> str:
        """The entry script's text, or an error listing the Python files at the top level."""
        entry = check_entry_path(entry)
        target = self.path / entry
        inside = target.resolve().is_relative_to(self.path.resolve())
        if not inside and os.path.lexists(target):
            raise GitSourceError(f"{entry} in {self.url} at commit {self.commit[:12]} is a link out of the repository "
                                 f"(to {os.readlink(target) if target.is_symlink() else target.resolve()}): a bundle "
                                 "holds only the repository's own files, and sm_magic reads nothing through such a "
                                 "link; commit the script itself, or write it in the cell")
        if not (inside and target.is_file()):
            found = sorted(p.name for p in self.path.glob("*.py") if p.is_file())
            hint = (f"Python files at its top level: {', '.join(found[:_HINTS])}{', ...' if len(found) > _HINTS else ''}"
                    if found else "it has no .py files at its top level")
            raise GitSourceError(f"no entry script {entry} in {self.url} at commit {self.commit[:12]} ({hint}); "
                                 "name the script with --entry PATH, or write it in the cell")
        try:
            return target.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise GitSourceError(f"{entry} in {self.url} is not UTF-8 text") from None

    def check_entry(self, entry: str) -> None:
        """The entry script exists and compiles (the job would fail at once otherwise)."""
        text = self.entry_source(entry)
        try:
            compile(text, entry, "exec", dont_inherit=True)
        except SyntaxError as e:
            raise GitSourceError(f"syntax error in {entry} of {self.url} at commit {self.commit[:12]}, "
                                 f"line {e.lineno}: {e.msg}") from None

    def cleanup(self) -> None:
        if self._root is not None:
            _rmtree(self._root)

    def __enter__(self) -> "Checkout":
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


def fetch(url: str, *, branch: str | None = None, commit: str | None = None) -> Checkout:
    """Fetch `url` at `branch` (or tag), at `commit` (full or abbreviated SHA), or at its default
    branch, into a new temporary directory. On any error nothing is left behind."""
    check_options(url, branch, commit)
    git = shutil.which("git")
    if git is None:
        raise GitSourceError("git is not installed (no `git` command on PATH): install git to launch "
                             "from a repository, or paste the script into the cell")
    root = Path(tempfile.mkdtemp(prefix="sm_magic-git-"))
    try:
        heads, tags, default = _ls_remote(git, url)
        work = root / "src"
        if commit:
            full = _fetch_commit(git, url, commit, work)
            return Checkout(work, strip_credentials(url), full, _root=root)
        name = branch or default
        if branch and branch not in heads and branch not in tags:
            shown = ", ".join(sorted(heads)[:_HINTS]) + (", ..." if len(heads) > _HINTS else "")
            raise GitSourceError(f"branch {branch!r} not found in {strip_credentials(url)}; its branches: "
                                 f"{shown or 'none'}")
        cmd = ["clone", "--quiet", "--depth", "1", "--single-branch", "--no-tags"]
        _git(git, url, *cmd, *(["--branch", name] if name else []), "--", url, str(work))
        full = _git(git, url, "-C", str(work), "rev-parse", "HEAD").stdout.strip()
        if name is None:  # a server that does not say which branch HEAD is
            name = _git(git, url, "-C", str(work), "rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
        is_tag = branch is not None and branch not in heads
        return Checkout(work, strip_credentials(url), full, branch=None if is_tag else name,
                        tag=name if is_tag else None, _root=root)
    except BaseException:
        _rmtree(root)
        raise


def _ls_remote(git: str, url: str) -> tuple[dict, dict, str | None]:
    """The repository's branches and tags (name -> SHA) and its default branch; the first
    contact, so an unreadable repository is reported here."""
    out = _git(git, url, "ls-remote", "--symref", "--", url, what="read repository").stdout
    heads, tags, default = {}, {}, None
    for line in out.splitlines():
        left, _, ref = line.partition("\t")
        if left.startswith("ref: ") and ref == "HEAD":
            default = left[5:].removeprefix("refs/heads/")
        elif ref.startswith("refs/heads/"):
            heads[ref[len("refs/heads/"):]] = left
        elif ref.startswith("refs/tags/"):
            tags[ref[len("refs/tags/"):].removesuffix("^{}")] = left
    if not heads:
        raise GitSourceError(f"{strip_credentials(url)} has no branches (an empty repository?): nothing to run")
    return heads, tags, default


def _fetch_commit(git: str, url: str, commit: str, work: Path) -> str:
    """Check out `commit`: a full SHA by a shallow fetch where the server allows it, else (or
    for an abbreviated SHA) every branch and tag, then the commit among them."""
    _git(git, url, "init", "--quiet", str(work))
    _git(git, url, "-C", str(work), "remote", "add", "origin", url)
    commit = commit.lower()
    if len(commit) in (40, 64):
        shallow = _git(git, url, "-C", str(work), "fetch", "--quiet", "--depth", "1", "--no-tags", "origin", commit,
                       check=False)
        if shallow.returncode == 0:
            _git(git, url, "-C", str(work), "-c", "advice.detachedHead=false", "checkout", "--quiet", "FETCH_HEAD")
            return _git(git, url, "-C", str(work), "rev-parse", "HEAD").stdout.strip()
    _git(git, url, "-C", str(work), "fetch", "--quiet", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*")
    found = _git(git, url, "-C", str(work), "rev-parse", "--verify", f"{commit}^{{commit}}",
                 check=False)
    full = found.stdout.strip()
    if found.returncode != 0 or not full.startswith(commit):
        if "ambiguous" in found.stderr:
            raise GitSourceError(f"--git-commit {commit} is ambiguous in {strip_credentials(url)}: "
                                 "give more of its digits")
        raise GitSourceError(f"commit {commit} not found in {strip_credentials(url)} (searched every branch and "
                             "tag): check the SHA, and that the commit was pushed")
    _git(git, url, "-C", str(work), "-c", "advice.detachedHead=false", "checkout", "--quiet", full)
    return full


def _env() -> dict:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="", GCM_INTERACTIVE="never", LC_ALL="C")
    env.pop("SSH_ASKPASS", None)
    if "GIT_SSH_COMMAND" not in env and "GIT_SSH" not in env:
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    return env


def _git(git: str, url: str, *args: str, check: bool = True, what: str = "fetch") -> subprocess.CompletedProcess:
    """Run git without a terminal or prompts; a failure is a GitSourceError with git's own
    reason (its first `fatal:`/`error:` line, else its last line), credentials removed."""
    result = subprocess.run([git, "-c", "credential.interactive=never", *args], env=_env(),
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
    if check and result.returncode != 0:
        lines = [l.strip() for l in result.stderr.splitlines() if l.strip()]
        reason = next((l for l in lines if l.startswith(("fatal:", "error:"))), lines[-1] if lines else
                      f"git exited with status {result.returncode}")
        reason = reason.removeprefix("fatal: ").removeprefix("error: ")
        raise GitSourceError(f"cannot {what} {strip_credentials(url)}: {redact(reason, url)}")
    return result


def _rmtree(path: Path) -> None:
    """Remove a checkout, read-only git objects included."""
    def writable_then_retry(func, p, _exc):
        try:
            os.chmod(p, stat.S_IWRITE | stat.S_IREAD | stat.S_IEXEC)
            func(p)
        except OSError:
            pass
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=writable_then_retry)
    else:
        shutil.rmtree(path, onerror=writable_then_retry)
