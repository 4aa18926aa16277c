"""Real git repositories for the tests (tests/test_git_source.py, tests/test_export.py): made with
`git init` in a tmp dir, no global or system git config, fetched through file URLs."""

import os
import subprocess
from pathlib import Path

from .jobscripts import script

TRAIN = script("""
    import json, os, sys
    import helper
    print(f"entry=train.py helper={helper.VERSION} argv={sys.argv[1:]}")
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.json"), "w") as f:
        json.dump({"helper": helper.VERSION}, f)
""")
EXP_TRAIN = script("""
    import helper
    print(f"entry=exp-train.py helper={helper.VERSION}")
""")
SUB_ENTRY = script("""
    import util  # beside this script in src/
    print(f"entry=src/run.py util={util.WORD}")
""")


def git(cwd, *args) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="Test", GIT_AUTHOR_EMAIL="test@example.com",
               GIT_COMMITTER_NAME="Test", GIT_COMMITTER_EMAIL="test@example.com",
               GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    return subprocess.run(["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", *args],
                          cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


class Repo:
    """A repository with two commits on main and a branch `exp` from the first one:

    main~1 (`first`, tag v1): train.py imports helper (VERSION main-1), requirements.txt, src/run.py + src/util.py
    main   (`second`): helper VERSION main-2
    exp    (`exp`):    from first; train.py prints another entry name, helper VERSION exp
    """

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True)
        git(path, "init", "-q")
        self.write("train.py", TRAIN)
        self.write("helper.py", 'VERSION = "main-1"\n')
        self.write("requirements.txt", "tqdm>=4\n")
        self.write("src/run.py", SUB_ENTRY)
        self.write("src/util.py", 'WORD = "from-src"\n')
        self.first = self.commit("first")
        git(path, "tag", "-a", "v1", "-m", "release 1")
        self.write("helper.py", 'VERSION = "main-2"\n')
        self.second = self.commit("second")
        git(path, "checkout", "-q", "-b", "exp", self.first)
        self.write("train.py", EXP_TRAIN)
        self.write("helper.py", 'VERSION = "exp"\n')
        self.exp = self.commit("exp")
        git(path, "checkout", "-q", "main")
        self.url = path.as_uri()

    def write(self, name: str, text: str) -> None:
        (self.path / name).parent.mkdir(parents=True, exist_ok=True)
        (self.path / name).write_text(text)

    def commit(self, message: str) -> str:
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", message)
        return git(self.path, "rev-parse", "HEAD")
