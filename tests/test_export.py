"""`sm-magic export` (a notebook's train cells as bundle directories) and `sm-magic run` (one of
them launched from a shell), on the example notebook and on a synthetic one."""

import json
import subprocess
import tarfile
from pathlib import Path

import nbformat
import pytest

from sm_magic.cli.main import main
from sm_magic.config.model import TrainConfig
from sm_magic.jobs.registry import Registry

from helpers.gitrepos import EXP_TRAIN, Repo
from helpers.gitrepos import TRAIN as REPO_TRAIN
from helpers.jobscripts import INCLUDE_HELPERS as HELPERS
from helpers.jobscripts import SM_MAGIC, script

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "example_notebooks" / "quickstart.ipynb"

TRAIN_A = script("""
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int)
    args = p.parse_args()
    for epoch in range(args.epochs):
        print(f"epoch {epoch}: {{'loss': {loss_at(epoch)}}}")
    print(f"best={loss_at(args.epochs - 1)}")
    save({"epochs": args.epochs})
""")
TRAIN_B = script("""
    import os, sys
    import extra
    data = open(os.path.join(os.environ["SM_CHANNEL_DATA"], "x.txt")).read().strip()
    print(f"epoch 0: {{'value': {extra.triple(int(data))}}}", sys.argv[1:])
""")
TRAIN_FAIL = "x = loss_at(0)\nraise ValueError(f'bad {x}')\n"


def _code(src):
    return nbformat.v4.new_code_cell(src)


@pytest.fixture
def synthetic(sm_env):
    """notebooks/synth.ipynb with helper, config and data files beside it, as a user keeps them."""
    nb_dir = sm_env / "notebooks"
    (nb_dir / "conf").mkdir(parents=True)
    (nb_dir / "conf" / "train.yaml").write_text("compute_environment: AMAZON_SAGEMAKER\n"
                                                "base_job_name: from-yaml\nec2_instance_type: local\n")
    (nb_dir / "lib").mkdir()
    (nb_dir / "lib" / "extra.py").write_text("def triple(x):\n    return 3 * x\n")
    (nb_dir / "data").mkdir()
    (nb_dir / "data" / "x.txt").write_text("14\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# synthetic"),
        _code("%load_ext sm_magic"),                                                      # cell 2
        _code("import statistics\nSCALE = 3"),                                            # cell 3
        _code("%%sagemaker_include helpers\n" + HELPERS),                                 # cell 4
        _code("%%sagemaker_train --name exp-a --include helpers --metric best=best=([0-9.]+) -o ja "
              "-- --epochs 2\n" + TRAIN_A),                                               # cell 5
        _code("%%sagemaker_train --config conf/train.yaml --include lib/extra.py --input data=data "
              "--edit -- --flag {{literal}} '$HOME'\n" + TRAIN_B),                        # cell 6
        _code("%%sagemaker_train --dry-run --name exp-fail --include helpers\n" + TRAIN_FAIL),  # cell 7
        nbformat.v4.new_markdown_cell("done"),
    ]
    path = nb_dir / "synth.ipynb"
    nbformat.write(nb, path)
    return path


def test_synthetic_notebook_exports_every_train_cell_with_its_config(synthetic, sm_env, capsys):
    assert main(["export", str(synthetic), "--out", "bundles"]) == 0
    out = sm_env / "bundles"
    assert sorted(p.name for p in out.iterdir()) == ["exp-a", "exp-fail", "synth-cell-6"]
    assert "sm-magic run bundles/exp-a" in capsys.readouterr().out

    a = out / "exp-a"
    assert (a / "train.py").read_text() == TRAIN_A  # the cell verbatim
    assert HELPERS.rstrip() in (a / "sm_included.py").read_text()
    spec = json.loads((a / "sm_launch.json").read_text())
    assert spec["script"] == "sm_main.py" and spec["args"] == ["--epochs", "2"]
    assert spec["origin"] == {"notebook": str(synthetic), "cell": 5}
    job = json.loads((a / "job.json").read_text())  # the request `sm-magic run` launches, everything resolved
    assert job["format"] == 2 and job["args"] == ["--epochs", "2"]
    assert job["code"] == {"tree": ".", "script": "sm_main.py", "origin": {"notebook": str(synthetic), "cell": 5}}
    assert job["job"] == {"name": "exp-a", "metrics": [{"Name": "best", "Regex": "best=([0-9.]+)"}]}
    assert job["config"] == {"file": "config.yaml", "accelerate_default": False}
    assert job["source"]["cell"] == 5 and job["source"]["line"].startswith("%%sagemaker_train --name exp-a --include "
                                                                          "helpers")

    b = out / "synth-cell-6"
    assert (b / "train.py").read_text() == TRAIN_B and (b / "extra.py").is_file()
    assert not (b / "sm_main.py").exists()  # a file include needs no wrapper: `import extra`
    config = TrainConfig.from_yaml(b / "config.yaml")  # the --config file, found beside the notebook
    assert config.base_job_name == "from-yaml" and config.backend == "local"
    job = json.loads((b / "job.json").read_text())
    assert job["job"]["inputs"] == {"data": str(synthetic.parent / "data")}
    assert "name" not in job["job"]  # sm-magic run names it from base_job_name, as the magic would
    # {{ }} are unescaped as the kernel would; '$HOME' in single quotes is left alone, as IPython does
    assert json.loads((b / "sm_launch.json").read_text())["args"] == ["--flag", "{literal}", "$HOME"]


@pytest.mark.jobs
def test_exported_bundles_run_from_the_command_line(synthetic, sm_env, capsys):
    assert main(["export", str(synthetic), "--out", "bundles"]) == 0
    out = sm_env / "bundles"
    capsys.readouterr()

    assert main(["run", str(out / "exp-a"), "--wait"]) == 0
    text = capsys.readouterr().out
    assert "epoch 1: {'loss': 1.0}" in text and "Completed - Training job completed" in text
    record = Registry().get("exp-a")
    assert record.extra["notebook"] == str(synthetic) and record.extra["cell"] == 5
    from sm_magic import attach

    job = attach("exp-a")
    assert list(job.metrics["loss"]) == [2.0, 1.0] and job.metrics["best"].iloc[-1] == 1.0
    with tarfile.open(job.model_data) as tar:
        assert json.load(tar.extractfile("result.json")) == {"epochs": 2}

    # The name is the cell's --name: a second run needs another.
    assert main(["run", str(out / "exp-a")]) == 2
    assert "already in the registry: choose another --name" in capsys.readouterr().err

    # Without --wait: the job's name and how to follow it; script arguments replaced after --.
    assert main(["run", str(out / "synth-cell-6"), "--", "--other"]) == 0
    name = capsys.readouterr().out.split()[0]
    assert name.startswith("from-yaml-")
    assert main(["wait", name]) == 0
    assert "epoch 0: {'value': 42} ['--other']" in capsys.readouterr().out

    # A failing script: exit status 1, and its traceback points at the cell's own line.
    assert main(["run", str(out / "exp-fail"), "--wait"]) == 1
    text = capsys.readouterr().out
    assert 'train.py", line 2, in <module>' in text and "ValueError: bad 2.0" in text


@pytest.mark.jobs
def test_quickstart_exports_and_runs_in_a_shell(sm_env):
    done = subprocess.run([str(SM_MAGIC), "export", str(QUICKSTART)], capture_output=True, text=True, cwd=sm_env)
    assert done.returncode == 0, done.stderr
    bundle = sm_env / "quickstart_export" / "quickstart-cell-4"
    nb = nbformat.read(QUICKSTART, as_version=4)
    cell = nb.cells[3].source
    assert (bundle / "train.py").read_text() == cell.split("\n", 1)[1] + "\n"
    assert TrainConfig.from_yaml(bundle / "config.yaml").backend == "local"

    done = subprocess.run([str(SM_MAGIC), "run", str(bundle), "--wait", "--", "--epochs", "2"],
                          capture_output=True, text=True, cwd=sm_env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "epoch 1: {'accuracy': " in done.stdout and "Completed - Training job completed" in done.stdout
    [record] = Registry().list()
    from sm_magic import attach

    job = attach(record.name)
    assert list(job.metrics.columns)[:2] == ["accuracy", "f1"] and len(job.metrics) == 2
    assert job.metrics["accuracy"].iloc[-1] > 0.85
    with tarfile.open(job.model_data) as tar:
        assert "model.pt" in tar.getnames()


def test_a_notebook_with_problems_is_refused_cell_by_cell_and_nothing_is_written(sm_env, capsys):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        _code("import statistics\nSCALE = 3"),                                            # cell 1
        _code("%%sagemaker_include helpers\ndef helper():\n    return 1\n"),              # cell 2
        _code("%%sagemaker_train --name ok-cell\nprint('fine')\n"),                       # cell 3
        _code("%%sagemaker_train\nprint(statistics.mean([SCALE, 1]))\n"),                 # cell 4
        _code("%%sagemaker_train -- --lr {lr}\nprint(1)\n"),                              # cell 5
        _code("%%sagemaker_train\nprint(helper())\n"),                                    # cell 6
        _code("%%sagemaker_train\ndef f(:\n    pass\n"),                                  # cell 7
        _code("%%sagemaker_train --instance-count zero\nprint(1)\n"),                     # cell 8
        _code("%%sagemaker_train --include nothing_here.py\nprint(1)\n"),                 # cell 9
    ]
    path = sm_env / "bad.ipynb"
    nbformat.write(nb, path)
    assert main(["export", str(path), "--out", "out"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sm-magic: cannot export bad.ipynb; nothing was written:")
    lines = err.splitlines()
    assert not any(l.startswith("cell 3:") for l in lines)
    assert any(l.startswith("cell 4: this cell uses names that only the notebook defines")
               and "SCALE (defined in cell 1 of bad.ipynb)" in l and "statistics (defined in cell 1" in l
               for l in lines)
    assert any(l.startswith("cell 5: the line uses IPython expansion ({lr})") for l in lines)
    assert any(l.startswith("cell 6: ") and "add --include helpers" in l for l in lines)
    assert any(l.startswith("cell 7: syntax error in the cell, line 1") for l in lines)
    assert any(l.startswith("cell 8: %%sagemaker_train: argument --instance-count") for l in lines)
    assert any(l.startswith("cell 9: --include nothing_here.py: no such file") for l in lines)
    assert not (sm_env / "out").exists()


def test_export_refuses_to_overwrite_unless_forced(sm_env, capsys):
    nb = nbformat.v4.new_notebook()
    nb.cells = [_code("%%sagemaker_train --name again\nprint('v1')\n")]
    path = sm_env / "again.ipynb"
    nbformat.write(nb, path)
    assert main(["export", str(path)]) == 0
    nb.cells = [_code("%%sagemaker_train --name again\nprint('v2')\n")]
    nbformat.write(nb, path)
    assert main(["export", str(path)]) == 2
    assert "again_export/again exists (--force replaces it)" in capsys.readouterr().err
    assert (sm_env / "again_export" / "again" / "train.py").read_text() == "print('v1')\n"
    assert main(["export", str(path), "--force"]) == 0
    assert (sm_env / "again_export" / "again" / "train.py").read_text() == "print('v2')\n"
    assert [p.name for p in (sm_env / "again_export").iterdir()] == ["again"]  # no staging left


def test_run_refuses_a_directory_that_is_not_an_exported_bundle(sm_env, capsys):
    (sm_env / "plain").mkdir()
    assert main(["run", str(sm_env / "plain")]) == 2
    assert "is not an exported bundle: it has no job.json" in capsys.readouterr().err
    assert main(["export", str(sm_env / "missing.ipynb")]) == 2
    assert "no notebook" in capsys.readouterr().err


# --- --git-repo cells ---------------------------------------------------------------------------

GIT_BODY = 'import util\nprint(f"body util={util.WORD}")\n'


@pytest.mark.jobs
def test_git_cells_export_the_repository_at_a_pinned_commit_and_run_without_it(sm_env, tmp_dir, capsys):
    repo = Repo(sm_env / "repos" / "proj")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        _code(f"%%sagemaker_train --name git-exp --git-repo {repo.url} --git-branch exp\n\n"),      # cell 1: blank
        _code(f"%sagemaker_train --name git-first --git-repo {repo.url} --git-commit {repo.first[:10]} "
              "-- --epochs 2"),                                                                   # cell 2: line form
        _code(f"%%sagemaker_train --git-repo {repo.url} --entry src/run.py\n" + GIT_BODY),         # cell 3: body
    ]
    path = sm_env / "gitnb.ipynb"
    nbformat.write(nb, path)
    assert main(["export", str(path), "--out", "bundles"]) == 0
    out = sm_env / "bundles"
    assert sorted(p.name for p in out.iterdir()) == ["git-exp", "git-first", "gitnb-cell-3"]
    assert list(tmp_dir.iterdir()) == []  # the checkouts are gone

    expected = {"git-exp": ({"url": repo.url, "commit": repo.exp, "branch": "exp"}, 1),
                "git-first": ({"url": repo.url, "commit": repo.first, "branch": None}, 2),
                "gitnb-cell-3": ({"url": repo.url, "commit": repo.second, "branch": "main"}, 3)}
    for name, (git, cell) in expected.items():
        bundle = out / name
        spec = json.loads((bundle / "sm_launch.json").read_text())
        assert spec["origin"] == {"git": git, "notebook": str(path), "cell": cell}
        job = json.loads((bundle / "job.json").read_text())
        assert job["code"]["origin"]["git"] == git and job["source"]["cell"] == cell
        assert "git_repo" not in job["code"]  # the repository's files are the bundle's: run needs no fetch
        assert not (bundle / ".git").exists()
        assert (bundle / "requirements.txt").read_text().startswith("tqdm>=4\n")  # the repository's own
    # The whole tree at that commit; a cell body replaces the entry script where it lies.
    assert (out / "git-exp" / "train.py").read_text() == EXP_TRAIN
    assert (out / "git-exp" / "helper.py").read_text() == 'VERSION = "exp"\n'
    assert (out / "git-first" / "train.py").read_text() == REPO_TRAIN
    assert (out / "git-first" / "helper.py").read_text() == 'VERSION = "main-1"\n'
    assert json.loads((out / "git-first" / "sm_launch.json").read_text())["args"] == ["--epochs", "2"]
    third = out / "gitnb-cell-3"
    assert (third / "src" / "run.py").read_text() == GIT_BODY and (third / "src" / "util.py").is_file()
    assert json.loads((third / "sm_launch.json").read_text())["script"] == "src/run.py"

    # The branch moves on and the repository goes away: the bundles still run the exported commits.
    repo.write("helper.py", 'VERSION = "exp-2"\n')
    repo.commit("exp moved on")
    repo.path.rename(sm_env / "repos" / "gone")
    capsys.readouterr()
    assert main(["run", str(out / "git-exp"), "--wait"]) == 0
    assert "entry=exp-train.py helper=exp\n" in capsys.readouterr().out
    assert main(["run", str(out / "git-first"), "--wait"]) == 0
    assert "entry=train.py helper=main-1 argv=['--epochs', '2']" in capsys.readouterr().out
    assert main(["run", str(out / "gitnb-cell-3"), "--wait", "--name", "git-body"]) == 0
    assert "body util=from-src" in capsys.readouterr().out
    for name, (git, cell) in expected.items():
        record = Registry().get("git-body" if name == "gitnb-cell-3" else name)
        assert record.status == "Completed"
        assert record.extra["git"] == git and record.extra["cell"] == cell
    assert list(tmp_dir.iterdir()) == []


def test_git_cells_that_cannot_be_fetched_refuse_the_export_naming_the_cell(sm_env, tmp_dir, capsys):
    repo = Repo(sm_env / "repos" / "proj")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        _code(f"%%sagemaker_train --name fine --git-repo {repo.url}\n\n"),                      # cell 1: good
        _code(f"%sagemaker_train --git-repo {repo.url} --git-branch gone"),                      # cell 2
        _code(f"%sagemaker_train --git-repo {repo.url} --git-commit deadbeef"),                  # cell 3
        _code(f"%sagemaker_train --git-repo {repo.url} --git-branch main --git-commit {repo.first}"),  # cell 4
        _code(f"%sagemaker_train --git-repo {repo.url} --entry missing.py"),                     # cell 5
        _code("%sagemaker_train --git-repo http://alice:s3cret-token@127.0.0.1:9/none.git"),    # cell 6
        _code("%%sagemaker_train --git-commit abc123\nprint(1)\n"),                             # cell 7
    ]
    path = sm_env / "badgit.ipynb"
    nbformat.write(nb, path)
    assert main(["export", str(path), "--out", "out"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sm-magic: cannot export badgit.ipynb; nothing was written:")
    lines = err.splitlines()
    assert not any(l.startswith("cell 1:") for l in lines)
    assert any(l.startswith("cell 2: branch 'gone' not found in") and "its branches: exp, main" in l for l in lines)
    assert any(l.startswith("cell 3: commit deadbeef not found in") for l in lines)
    assert any(l.startswith("cell 4: give --git-branch or --git-commit, not both") for l in lines)
    assert any(l.startswith("cell 5: no entry script missing.py in") and "helper.py, train.py" in l for l in lines)
    assert any(l.startswith("cell 6: cannot read repository http://127.0.0.1:9/none.git") for l in lines)
    assert any(l.startswith("cell 7: --git-commit needs --git-repo URL") for l in lines)
    assert "s3cret-token" not in err and "alice" not in err
    assert not (sm_env / "out").exists()
    assert list(tmp_dir.iterdir()) == []  # cell 1's checkout too


def test_spot_resume_notebook_exports_with_its_helper_cell_and_interruption(sm_env, capsys):
    spot = ROOT / "example_notebooks" / "spot_resume.ipynb"
    assert main(["export", str(spot), "--out", str(sm_env / "out")]) == 0
    [bundle] = (sm_env / "out").iterdir()
    job = json.loads((bundle / "job.json").read_text())
    assert job["job"]["simulate_interruptions"] == [8.0] and "--include data" in job["source"]["line"]
    assert "def make_data(" in (bundle / "sm_included.py").read_text()
    assert "make_data()" in (bundle / "train.py").read_text()
