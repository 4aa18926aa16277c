"""Adversarial `.smignore` files, as a careless user or a hostile repository writes them. Issue 23,
finding 5: a pattern of `*a` x14 + `*b` against a 40-character file name left `--include` and
`--git-repo` dry runs unanswered after 60 s (Python's `re` backtracked exponentially, holding the
GIL, so the kernel froze with them), and a line `[z-a]` was a raw `re.error` traceback in the magic
and in `sm-magic export`.

Each pattern now runs in RE2 (linear in the path, whatever the pattern), a pattern that cannot
work is refused when the file is read, naming the file, the line and the pattern, and the file is
bounded (size, patterns, pattern length). The runs that stalled are made in a subprocess with a
generous time limit, so that the old behaviour fails the test in bounded time."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from IPython.core.error import UsageError

from sm_magic.bundle.build import BundleCode, BundleError, JobSpec, build_bundle
from sm_magic.bundle.smignore import MAX_BYTES, MAX_PATTERN_CHARS, MAX_PATTERNS, IgnoreRules
from sm_magic.config.model import TrainConfig
from sm_magic.jobs.registry import Registry
from sm_magic.plan import planner as api

from helpers.gitrepos import Repo
from helpers.jobscripts import SM_MAGIC

HOSTILE = "*a" * 14 + "*b"       # finding 5: Python's re tried every way to place 14 a's
LONG_NAME = "a" * 40              # ... in a name that has no b to end it
NAMED = "xa" * 14 + "yb"          # a name the hostile pattern does name
LIMIT = 120                       # seconds: start-up alone takes 20 under load; the old matcher took an hour
CELL = "print(1)\n"

# The magic's dry run in a fresh IPython, as a notebook runs it: a stalled match holds the GIL, so
# only a child process can be given up on.
DRIVE_MAGIC = textwrap.dedent("""
    import sys
    from IPython.testing.globalipapp import start_ipython
    ip = start_ipython()
    ip.run_line_magic("load_ext", "sm_magic")
    ip.run_cell_magic("sagemaker_train", "--dry-run " + sys.argv[1], "print(1)\\n")
""")


def _tree(where: Path, smignore: str, *names: str) -> Path:
    where.mkdir(parents=True)
    (where / ".smignore").write_text(smignore)
    (where / "helper.py").write_text("X = 1\n")
    for name in names:
        (where / name).write_text("x\n")
    return where


def _nothing_written(sm_env):
    jobs = sm_env / "sm_jobs"
    assert not jobs.exists() or not any(jobs.iterdir())
    assert Registry().list() == []


def _in_time(argv, cwd) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=LIMIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{argv[-1]!r} was not answered within {LIMIT} s: the .smignore match stalls")


def _export(sm_env, cell_line: str) -> subprocess.CompletedProcess:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"%%sagemaker_train {cell_line}\n{CELL}")]
    nbformat.write(nb, sm_env / "nb.ipynb")
    return _in_time([str(SM_MAGIC), "export", "nb.ipynb"], sm_env)


def _one_line_exit_2(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sm-magic: "), done.stderr
    return lines[0]


# --- a pattern that backtracked ---------------------------------------------------------------------

@pytest.mark.jobs
def test_a_backtracking_pattern_answers_an_include_dry_run_at_once(sm_env):
    _tree(sm_env / "lib", HOSTILE + "\n", LONG_NAME)
    done = _in_time([sys.executable, "-c", DRIVE_MAGIC, "--include lib"], sm_env)
    assert done.returncode == 0, done.stderr
    assert "Bundle files:" in done.stdout and "lib" in done.stdout
    _nothing_written(sm_env)


@pytest.mark.jobs
def test_a_backtracking_pattern_in_a_repository_answers_a_git_repo_dry_run_at_once(sm_env):
    repo = Repo(sm_env / "repo")
    repo.write(".smignore", HOSTILE + "\n")
    repo.write(LONG_NAME, "x\n")
    repo.commit("hostile .smignore")
    done = _in_time([sys.executable, "-c", DRIVE_MAGIC, f"--git-repo {repo.url}"], sm_env)
    assert done.returncode == 0, done.stderr
    assert "Code: git " in done.stdout and "Bundle files:" in done.stdout
    _nothing_written(sm_env)


@pytest.mark.jobs
def test_the_backtracking_pattern_still_leaves_out_what_it_names_in_an_export(sm_env):
    _tree(sm_env / "lib", HOSTILE + "\n", LONG_NAME, NAMED)
    done = _export(sm_env, "--name hostile --include lib")
    assert done.returncode == 0, done.stderr
    bundled = {p.name for p in (sm_env / "nb_export" / "hostile" / "lib").iterdir()}
    assert bundled == {"helper.py", LONG_NAME}


# --- a pattern that cannot work -----------------------------------------------------------------------

def test_a_backward_range_is_one_usage_error_naming_the_file_line_and_pattern(ip, sm_env, tmp_dir):
    _tree(sm_env / "lib", "# data\n[z-a]*.csv\n")
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("sagemaker_train", "--dry-run --include lib", CELL)
    message = str(err.value)
    assert "\n" not in message
    assert "lib/.smignore, line 2" in message and "[z-a]*.csv" in message and "z-a" in message
    assert "[a-z]" in message  # what to write instead
    _nothing_written(sm_env)
    assert list(tmp_dir.iterdir()) == []


def test_a_backward_range_in_a_repository_is_a_usage_error_for_git_repo(ip, sm_env, tmp_dir):
    repo = Repo(sm_env / "repo")
    repo.write(".smignore", "*.log\n[9-0].bin\n")
    repo.commit("bad .smignore")
    with pytest.raises(UsageError) as err:
        ip.run_line_magic("sagemaker_train", f"--dry-run --git-repo {repo.url}")
    message = str(err.value)
    assert ".smignore" in message and "line 2" in message and "[9-0].bin" in message
    assert str(tmp_dir) not in message  # not the temporary checkout's path
    _nothing_written(sm_env)
    assert list(tmp_dir.iterdir()) == []


@pytest.mark.jobs
def test_sm_magic_export_with_a_backward_range_prints_one_line_and_exits_2(sm_env):
    _tree(sm_env / "lib", "[z-a]\n")
    line = _one_line_exit_2(_export(sm_env, "--include lib"))
    assert "lib/.smignore, line 1" in line and "[z-a]" in line
    assert not (sm_env / "nb_export").exists()


def test_an_unterminated_bracket_is_refused_with_how_to_match_a_bracket(sm_env, tmp_dir):
    _tree(sm_env / "lib", "ok.txt\n\n[abc\n")
    with pytest.raises(BundleError) as err:
        api.dry_run(CELL, include=[str(sm_env / "lib")])
    message = str(err.value)
    assert "lib/.smignore, line 3" in message and "[abc" in message and "\\[" in message
    _nothing_written(sm_env)


# --- bounds -----------------------------------------------------------------------------------------

def test_an_smignore_over_the_size_bound_is_refused_naming_the_bound(ip, sm_env):
    _tree(sm_env / "lib", "# filler\n" * (MAX_BYTES // 9 + 1))
    with pytest.raises(UsageError, match=r"lib/\.smignore is over .* at most"):
        ip.run_cell_magic("sagemaker_train", "--dry-run --include lib", CELL)
    _nothing_written(sm_env)


def test_an_smignore_with_too_many_patterns_is_refused(ip, sm_env):
    _tree(sm_env / "lib", "".join(f"f{i}\n" for i in range(MAX_PATTERNS + 1)))
    with pytest.raises(UsageError, match=rf"lib/\.smignore has more than {MAX_PATTERNS:,} patterns"):
        ip.run_cell_magic("sagemaker_train", "--dry-run --include lib", CELL)
    _nothing_written(sm_env)


def test_a_pattern_over_the_length_bound_is_refused_naming_its_line(ip, sm_env):
    _tree(sm_env / "lib", "*.tmp\n" + "*a" * (MAX_PATTERN_CHARS // 2 + 1) + "\n")
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("sagemaker_train", "--dry-run --include lib", CELL)
    assert "lib/.smignore, line 2" in str(err.value) and f"{MAX_PATTERN_CHARS:,}" in str(err.value)
    _nothing_written(sm_env)


@pytest.mark.jobs
def test_an_smignore_at_every_bound_exports_in_time_with_nothing_on_stderr(sm_env):
    # RE2 logs on stderr when an expression is over its budget: the patterns are joined in groups below it.
    line = ("*a" * MAX_PATTERN_CHARS)[:MAX_PATTERN_CHARS]
    _tree(sm_env / "lib", (line + "\n") * (MAX_BYTES // (len(line) + 1) - 1) + "*b\n", LONG_NAME, "b")
    done = _export(sm_env, "--name bounds --include lib")
    assert done.returncode == 0 and done.stderr == "", done.stderr[-2000:]
    assert {p.name for p in (sm_env / "nb_export" / "bounds" / "lib").iterdir()} == {"helper.py", LONG_NAME}


# --- names a hostile repository holds -------------------------------------------------------------

@pytest.mark.skipif(sys.platform == "darwin", reason="macOS refuses file names that are not UTF-8")
def test_a_file_name_that_is_not_utf8_is_still_matched(sm_env):
    tree = _tree(sm_env / "code", "*.bin\n", "train.py")
    (tree / os.fsdecode(b"\xff\xfe.bin")).write_text("x\n")
    bundle = build_bundle(BundleCode(CELL, tree=tree), JobSpec(TrainConfig(), [], name="j"), dest=sm_env / "b")
    assert not [p for p in bundle.path.iterdir() if p.name.endswith(".bin")]


def test_a_file_name_with_a_newline_under_an_ignored_directory_is_left_out(sm_env):
    tree = _tree(sm_env / "code", "cache/**\n*.log\n", "train.py")
    (tree / "cache").mkdir()
    (tree / "cache" / "a\nb").write_text("x\n")
    (tree / "x\n.log").write_text("x\n")
    bundle = build_bundle(BundleCode(CELL, tree=tree), JobSpec(TrainConfig(), [], name="j"), dest=sm_env / "b")
    assert list((bundle.path / "cache").iterdir()) == []
    assert not (bundle.path / "x\n.log").exists()


# --- gitignore syntax as before -------------------------------------------------------------------

@pytest.mark.parametrize("lines, path, is_dir, ignored", [
    (["*.py[co]"], "a/b.pyc", False, True),
    (["*.py[co]"], "a/b.pyx", False, False),
    (["[^a-c]x"], "dx", False, True),
    (["[^a-c]x"], "bx", False, False),
    (["[!a-c]x"], "a/x", False, False),        # a negated class never matches /
    (["[]]x"], "]x", False, True),              # ] first in a class is itself
    (["[a-c-e]"], "-", False, True),            # - after a range is itself
    (["[\\]"], "\\", False, True),              # a backslash in a class is itself
    (["a\\*b"], "a*b", False, True),
    (["a\\*b"], "axb", False, False),
    (["\\!x"], "!x", False, True),
    (["!x"], "x", False, False),
    (["x\\ "], "x ", False, True),              # an escaped trailing space is kept
    (["x   "], "x", False, True),               # others are not
    (["*.log", "!keep.log"], "a/keep.log", False, False),
    (["*.log", "!keep.log", "a/*.log"], "a/keep.log", False, True),  # the last match decides
    (["?"], "a/b", False, True),
    (["?"], "ab", False, False),
    (["a?b"], "a/b", False, False),
    (["**"], "a/b/c", False, True),
    (["**/b"], "b", False, True),
    (["a/**"], "a", True, False),
    (["a/**"], "a/b/c", False, True),
    (["a**b"], "a/b", False, False),            # ** not a whole segment is *
    (["a**b"], "axyb", False, True),
    (["/a/b"], "a/b", False, True),
    (["/a/b"], "x/a/b", False, False),
    (["a/b"], "x/a/b", False, False),           # a / in the middle anchors
    (["b"], "x/a/b", False, True),
    (["data/"], "x/data", True, True),
    (["data/"], "x/data", False, False),
    (["é*"], "x/éa", False, True),
    (["*.ckpt"], "a.CKPT", False, False),       # case matters
    (["foo\\"], "foo\\", False, True),          # a trailing backslash is itself
])
def test_gitignore_syntax_matches_as_it_did(lines, path, is_dir, ignored):
    assert IgnoreRules(lines).match(path, is_dir) is ignored


def test_a_close_bracket_first_in_a_negated_class_is_one_of_its_members():
    # It was read as [^/] followed by a literal ]: `[!]]x` named "a]x" and not "ax".
    rules = IgnoreRules(["[!]]x"])
    assert rules.match("ax", False) and not rules.match("]x", False) and not rules.match("a]x", False)
