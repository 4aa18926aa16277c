"""A user's files into a job bundle: regular files only, never a secret.

The one way every tree that goes into a bundle is copied (a git checkout, a code directory, an
`--include` directory, an exported bundle run again): `plan_tree` walks it without following links
and says what to copy; `copy_plan` copies exactly that. So:

- a link whose target stays inside the tree is copied as the regular file (or directory) it
  points to; one that leaves the tree, a broken one, a link loop and any special file (fifo,
  socket, device) is refused naming its path (or, for an `--include` directory, skipped with a
  warning): nothing outside the tree is read, and the bundle holds no link, so nothing is ever
  written through one;
- files that commonly hold secrets (`.env*`, `.aws/`, `.ssh/`, `.gnupg/`, `*.pem`, `*.key`,
  `*.p12`, `*.pfx`, `.netrc`, `.git-credentials`, `.pypirc`, `.pgpass`, ssh private keys such as
  `id_rsa` / `id_ed25519`; public `*.pub` keys are kept) are left out, and the caller says so in
  one line (`left_out_note`);
- `.smignore` at the top of the tree (gitignore syntax) leaves out more; it is not bundled itself.

`credentials.find_credentials` then checks a built bundle's text files for credential-shaped strings.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import stat
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from .smignore import IGNORE_FILE, IgnoreError, IgnoreRules

_LISTED = 20                      # paths named in one message at most

_SECRET_DIRS = frozenset({".aws", ".ssh", ".gnupg"})
_SECRET_FILE = re.compile(r"""^(?:
      \.env.*                                        # .env, .env.local, .envrc
    | .+\.(?:pem|key|p12|pfx)                        # private keys and key stores
    | \.netrc | _netrc | \.git-credentials | \.pypirc | \.pgpass
    | id_(?:rsa|dsa|ecdsa|ed25519)(?:_sk)?(?:[-_][A-Za-z0-9_-]*)?   # ssh private keys (not id_rsa.pub)
)$""", re.X)


def is_secret_name(name: str, is_dir: bool) -> bool:
    """Whether a file or directory of this name commonly holds secrets (and is never bundled)."""
    if is_dir:
        return name in _SECRET_DIRS or name.startswith(".env")
    return bool(_SECRET_FILE.match(name))


def _secret_path(rel: str) -> bool:
    """A path inside the tree (a link's target) that lies in or is a secret file or .git."""
    parts = rel.split("/")
    return (any(p in _SECRET_DIRS or p == ".git" or p.startswith(".env") for p in parts[:-1])
            or is_secret_name(parts[-1], False) or parts[-1] in _SECRET_DIRS)


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    return shown + (f" and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


def left_out_note(paths: list[str]) -> str:
    return (f"left out of the bundle (may hold secrets): {_listed(paths)} "
            f"(sm_magic never bundles such files; read secrets from the environment in the job)")


# --- the tree ------------------------------------------------------------------------------------

@dataclass
class TreePlan:
    """What `copy_plan` copies from a tree: directories and regular files by their path in the
    copy, each file from its real path; what was left out and, with `skip_unsafe`, skipped."""

    root: Path
    dirs: list[str] = field(default_factory=list)
    files: list[tuple[str, Path]] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # may hold secrets (directories end in /)
    skipped: list[str] = field(default_factory=list)   # "path (why)"


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (fifo)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return "not a regular file"


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


# noqa below: one walk that decides each entry (link, secret, ignored, special file) where it meets it;
# split, the walk's state (depth, budget, what was left out) would travel between functions.
def plan_tree(tree: Path, *, label: str = "the code", skip_unsafe: bool = False,  # noqa: C901
              ignore_names: Collection[str] = (".git",), exclude_top: Collection[str] = (),
              shown_prefix: str = "", error: Callable[[str], Exception] = ValueError) -> TreePlan:
    """Walk `tree` without following links and say what to copy (see the module's docstring).

    `label` names the tree in messages ("outside the code"), `shown_prefix` is put before the paths
    named in them. `ignore_names`: glob patterns of names left out at any depth, silently;
    `exclude_top`: names left out at the top. Links out of the tree, broken links, link loops
    and special files raise `error` naming them all, or with `skip_unsafe` are listed in
    `skipped`. Nothing outside the tree is read (a link's target is only resolved)."""
    tree = Path(tree)
    if not tree.is_dir():
        raise error(f"no directory {tree}")
    real_root = os.path.realpath(tree)
    plan = TreePlan(tree)
    problems: list[str] = []
    ignore = IgnoreRules()
    top_ignore = os.path.join(real_root, IGNORE_FILE)
    if os.path.lexists(top_ignore):
        real = os.path.realpath(top_ignore)
        if _inside(real, real_root) and os.path.isfile(real):
            shown = shown_prefix + IGNORE_FILE if shown_prefix else f"{IGNORE_FILE} at the top of {label}"
            try:
                ignore = IgnoreRules.read(Path(real), shown)
            except IgnoreError as e:  # even with skip_unsafe: what it should leave out is not known
                raise error(f"{e}. Nothing was written or launched.") from None
        else:
            problems.append(f"{shown_prefix}{IGNORE_FILE} (a link out of {label}, broken, or not a regular file)")

    def walk(real_dir: str, rel_dir: str, ancestors: frozenset) -> None:
        try:
            entries = sorted(os.scandir(real_dir), key=lambda e: e.name)
        except OSError as e:
            problems.append(f"{shown_prefix}{rel_dir or '.'} (cannot be read: {e.strerror})")
            return
        for entry in entries:
            name = entry.name
            rel = f"{rel_dir}/{name}" if rel_dir else name
            shown = shown_prefix + rel
            if (not rel_dir and (name == IGNORE_FILE or name in exclude_top)) or \
                    any(fnmatch.fnmatchcase(name, p) for p in ignore_names):
                continue
            lst = entry.stat(follow_symlinks=False)
            is_link = stat.S_ISLNK(lst.st_mode)
            st: os.stat_result | None
            try:
                st = os.stat(entry.path) if is_link else lst
            except OSError:
                st = None
            is_dir = st is not None and stat.S_ISDIR(st.st_mode)
            if ignore.match(rel, is_dir):
                continue
            if is_secret_name(name, is_dir):
                plan.left_out.append(shown + ("/" if is_dir else ""))
                continue
            source = entry.path
            if is_link:
                target = os.readlink(entry.path)
                real = os.path.realpath(entry.path)
                if st is None:
                    problems.append(f"{shown} (a broken link to {target})")
                    continue
                if not _inside(real, real_root):
                    problems.append(f"{shown} (a link to {target}, outside {label})")
                    continue
                if _secret_path(os.path.relpath(real, real_root).replace(os.sep, "/")):
                    plan.left_out.append(shown)
                    continue
                source = real
            if is_dir:
                real = os.path.realpath(source)
                if real in ancestors:
                    problems.append(f"{shown} (a link that loops back to a directory holding it)")
                    continue
                plan.dirs.append(rel)
                walk(real, rel, ancestors | {real})
            elif st is None:  # a broken link: reported above
                continue
            elif stat.S_ISREG(st.st_mode):
                plan.files.append((rel, Path(source)))
            else:
                problems.append(f"{shown} ({_kind(st.st_mode)})")

    walk(real_root, "", frozenset({real_root}))
    if problems and skip_unsafe:
        plan.skipped = problems
    elif problems:
        raise error(f"{label} holds what a bundle cannot: {_listed(problems)}. A bundle is built from regular "
                    f"files only: sm_magic neither reads through a link out of {label} nor writes through any "
                    f"link. Replace each link with the file itself (or a link inside {label}), remove special "
                    f"files, or list them in {IGNORE_FILE} at the top of {label}. Nothing was written or launched.")
    return plan


def copy_plan(plan: TreePlan, dest: Path) -> None:
    """Copy what `plan` holds into `dest` (made if missing): directories and regular files, each
    written as a new file (never through a link)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for rel in plan.dirs:
        (dest / rel).mkdir(exist_ok=True)
    for rel, source in plan.files:
        target = dest / rel
        if os.path.lexists(target):
            raise FileExistsError(f"{target} exists already")  # only a new, empty dest is ever passed
        shutil.copy2(source, target)


def copy_tree(tree: Path, dest: Path, *, log: Callable[[str], None] | None = None, **options) -> TreePlan:
    """`plan_tree(tree, **options)` copied into `dest`. With `log`, the files left out (one line)
    and anything skipped (one line) are said there; else the caller says them from the plan."""
    plan = plan_tree(tree, **options)
    copy_plan(plan, dest)
    if log is not None:
        if plan.skipped:
            log(skipped_note(options.get("label", "the code"), plan.skipped))
        if plan.left_out:
            log(left_out_note(plan.left_out))
    return plan


def skipped_note(label: str, skipped: list[str]) -> str:
    return (f"{label}: skipped what a bundle cannot hold (links out of it, broken links, special files): "
            f"{_listed(skipped)}")


def copy_file(path: Path, target: Path, error: Callable[[str], Exception] = ValueError) -> None:
    """One file the user named (e.g. `--include helpers.py`; a link to it is followed, as asked),
    written as a new regular file."""
    real = os.path.realpath(path)
    try:
        mode = os.stat(real).st_mode
    except OSError:
        raise error(f"{path}: no such file") from None
    if not stat.S_ISREG(mode):
        raise error(f"{path} is {_kind(mode)}: only regular files go into a bundle")
    if os.path.lexists(target):
        raise FileExistsError(f"{target} exists already")
    shutil.copy2(real, target)
