"""Cells that depend on earlier cells: `%%sagemaker_include TAG` and `--include`, through a real
IPython shell, and the undefined-name check (names.py) that refuses a cell before launch."""

import json
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from sm_magic.bundle import includes, names
from sm_magic.jobs.registry import Registry

from helpers.jobscripts import INCLUDE_HELPERS as HELPERS
from helpers.jobscripts import script

TRAIN = script("""
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int)
    args = p.parse_args()
    for epoch in range(args.epochs):
        print(f"epoch {epoch}: {{'loss': {loss_at(epoch)}}}")
    save({"epochs": args.epochs, "last": loss_at(args.epochs - 1)})
""")


def _nothing_written(sm_env):
    jobs = sm_env / "sm_jobs"
    assert not jobs.exists() or not any(jobs.iterdir())
    assert Registry().list() == []


def _bundle(job) -> Path:
    return Path(Registry().get(job.name).location) / "bundle"


@pytest.mark.jobs
def test_helper_cell_is_bundled_with_include_and_the_job_completes(ip, sm_env, capsys):
    ip.run_cell_magic("sagemaker_include", "inc-helpers-1", HELPERS)
    assert ip.user_ns["loss_at"](1) == 1.0  # the cell also ran in the kernel, as a plain cell would
    job = ip.run_cell_magic("sagemaker_train", "--wait --include inc-helpers-1 -- --epochs 3", TRAIN)
    assert job.status == "Completed"
    assert "epoch 2: {'loss': 0.6667}" in capsys.readouterr().out
    assert list(job.metrics["loss"]) == [2.0, 1.0, 0.6667]
    bundle = _bundle(job)
    # train.py is the cell verbatim; the helpers come as sm_included.py, run first by sm_main.py.
    assert (bundle / "train.py").read_text() == TRAIN
    assert HELPERS.rstrip() in (bundle / "sm_included.py").read_text()
    assert json.loads((bundle / "sm_launch.json").read_text())["script"] == "sm_main.py"
    import tarfile
    with tarfile.open(job.model_data) as tar:
        result = json.load(tar.extractfile("result.json"))
    assert result == {"epochs": 3, "last": 0.6667}


def test_without_include_the_cell_is_refused_naming_the_helper(ip, sm_env):
    ip.run_cell_magic("sagemaker_include", "inc-helpers-2", HELPERS)
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("sagemaker_train", "--wait -- --epochs 1", TRAIN)
    message = str(err.value)
    # (the test shell is shared: an earlier test's tag may define the same helpers)
    for helper in ("loss_at", "save"):
        where = message.split(f"{helper} (in the ", 1)[1].split(")", 1)[0]
        assert "`%%sagemaker_include" in where and "inc-helpers-2" in where and ": add --include " in where
    assert "Nothing was written or launched" in message
    _nothing_written(sm_env)


def test_a_name_from_a_plain_cell_is_refused_saying_where_it_was_defined(ip, sm_env):
    ip.run_cell("import statistics as inc_stats\nINC_THRESHOLD = 0.5\n", store_history=True)
    n = ip.execution_count - 1
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("sagemaker_train", "--dry-run", "print(inc_stats.mean([1, 2]) > INC_THRESHOLD)\n")
    message = str(err.value)
    assert f"INC_THRESHOLD (defined in the notebook, In [{n}])" in message
    assert f"inc_stats (defined in the notebook, In [{n}])" in message
    assert "%%sagemaker_include TAG" in message and "--include TAG" in message
    _nothing_written(sm_env)
    # Defined in the cell itself (in any scope), the same names are fine.
    out = ip.run_cell_magic("sagemaker_train", "--dry-run",
                            "import statistics as inc_stats\ndef f(INC_THRESHOLD=0.5):\n"
                            "    return inc_stats.mean([1, 2]) > INC_THRESHOLD\nprint(f())\n")
    assert out is None


@pytest.mark.jobs
def test_a_file_include_is_importable_by_its_module_name(ip, sm_env, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "inc_filehelpers.py").write_text("def double(x):\n    return 2 * x\n")
    job = ip.run_cell_magic("sagemaker_train", "--wait --include lib/inc_filehelpers.py",
                            "from inc_filehelpers import double\nprint(f'epoch 0: {{\"value\": {double(21)}}}')\n")
    assert job.status == "Completed" and list(job.metrics["value"]) == [42]
    bundle = _bundle(job)
    assert (bundle / "inc_filehelpers.py").is_file()
    assert json.loads((bundle / "sm_launch.json").read_text())["script"] == "train.py"
    assert "inc_filehelpers" not in (bundle / "requirements.txt").read_text()


def test_include_mistakes_are_clear_errors(ip, sm_env):
    with pytest.raises(UsageError, match=r"--include nope: no cell is marked `%%sagemaker_include nope`"):
        ip.run_cell_magic("sagemaker_train", "--include nope", "print(1)\n")
    with pytest.raises(UsageError, match=r"--include missing.py: no such file"):
        ip.run_cell_magic("sagemaker_train", "--include missing.py", "print(1)\n")
    with pytest.raises(UsageError, match="is not plain Python"):
        ip.run_cell_magic("sagemaker_include", "inc-magic", "!echo hi\nx = 1\n")
    with pytest.raises(UsageError, match="is not a tag"):
        ip.run_cell_magic("sagemaker_include", "helpers.py", "x = 1\n")
    with pytest.raises(UsageError, match="failed .above. and was not recorded"):
        ip.run_cell_magic("sagemaker_include", "inc-raises", "raise RuntimeError('boom')\n")
    with pytest.raises(UsageError, match="no cell is marked `%%sagemaker_include inc-raises`"):
        ip.run_cell_magic("sagemaker_train", "--include inc-raises", "print(1)\n")
    _nothing_written(sm_env)


@pytest.mark.jobs
def test_a_traceback_in_the_bundled_cell_keeps_the_cells_line_numbers(ip, sm_env):
    ip.run_cell_magic("sagemaker_include", "inc-helpers-3", HELPERS)
    from sm_magic.jobs.job import JobFailedError

    with pytest.raises(JobFailedError):
        ip.run_cell_magic("sagemaker_train", "--wait -o inc_failed --include inc-helpers-3",
                          "x = loss_at(0)\n\nraise ValueError(f'bad {x}')\n")
    log = ip.user_ns["inc_failed"].logs()
    assert 'train.py", line 3, in <module>' in log and "ValueError: bad 2.0" in log


def test_re_running_an_edited_include_cell_replaces_its_text():
    cells = includes.TaggedCells()
    cells.record(["a"], "x = 1\n", cell_id="c1")
    cells.record(["a"], "y = 2\n", cell_id="c2")
    cells.record(["a"], "x = 10\n", cell_id="c1")
    assert cells.as_dict() == {"a": ["x = 10\n", "y = 2\n"]}
    cells.record(["b"], "y = 3\n", cell_id="c2")  # the cell's tag changed
    assert cells.as_dict() == {"a": ["x = 10\n"], "b": ["y = 3\n"]}
    cells.record(["a"], "z = 1\n")  # no cell id (a terminal): known by its text
    cells.record(["a"], "z = 1\n")
    assert cells.as_dict()["a"] == ["x = 10\n", "z = 1\n"]


# --- names.py ---------------------------------------------------------------------------------

def test_every_kind_of_binding_counts_as_defined():
    code = script("""
        import os.path, numpy as np
        from collections import OrderedDict as OD, deque
        a, *rest = [1, 2, 3]
        b: int = 1
        c += 1
        def f(p, /, q=1, *args, r, s=2, **kw):
            global g
            g = p
            def inner():
                nonlocal q
                return q
            return lambda t, u=1: t + u + len(args) + len(kw)
        async def af():
            async with ctx() as (w1, w2):
                async for item in it():
                    pass
        class K(Base, metaclass=Meta):
            attr = 1
            other = attr
        for i, j in pairs: pass
        with open("x") as fh, open("y") as (fa, fb): pass
        try: pass
        except Exception as exc: print(exc)
        total = [v * 2 for v in range(3) if v] + [z for zz in [[1]] for z in zz]
        squares = {k: k * k for k in range(3)}
        if (n := 10) > 5: print(n)
        match cmd:
            case [first, *others]: print(first, others)
            case {"k": kv, **krest}: print(kv, krest)
            case Point(x=px): print(px)
        print(os, np, OD, deque, a, rest, b, c, f, g, af, K, i, j, fh, fa, fb, total, squares, __file__, __name__)
    """)
    free = names.free_names(code)
    # What remains is only what is really never bound: the ctx/it/Base/Meta/pairs/cmd/Point names.
    assert free == {"ctx", "it", "Base", "Meta", "pairs", "cmd", "Point"}


def test_a_name_bound_anywhere_counts_even_if_read_at_top_level():
    # Scope-blind on purpose: never a false alarm, at the price of missing some real errors.
    assert names.free_names("def f():\n    helper = 1\nprint(helper)\n") == set()
    assert names.free_names("class A:\n    x = 1\nprint(x)\n") == set()


def test_annotations_builtins_and_module_dunders_are_not_flagged():
    code = "from __future__ import annotations\ndef f(x: Tensor) -> Model:\n    y: Batch = x\n    return len(y)\n" \
           "print(__file__, __name__, __doc__, print, ValueError, __builtins__)\n"
    assert names.free_names(code) == set()


def test_code_whose_names_cannot_be_known_is_not_checked():
    assert names.free_names("from helpers import *\nprint(anything)\n") is None
    assert names.free_names("exec('x = 1')\nprint(x)\n") is None
    assert names.free_names("globals()['x'] = 1\nprint(x)\n") is None
    # vars(obj) and globals-free code are still checked
    assert names.free_names("import argparse\nprint(vars(argparse.Namespace()), missing)\n") == {"missing"}


def test_several_sources_share_one_namespace():
    assert names.free_names("def h():\n    return model\n", "model = 1\nprint(h())\n") == set()
    assert names.free_names("def h():\n    return model\n", "print(h())\n") == {"model"}


def test_module_names_are_what_a_cell_leaves_behind():
    code = script("""
        import os.path as osp, json
        from x import y as z
        A = 1
        def f():
            local = 1
            global G
            G = 2
        class C:
            attr = 1
        for i in range(2): pass
        try: pass
        except Exception as e: handled = True
        sq = [v for v in range(3)]
        sq2 = [(w := v) for v in range(3)]
        lam = lambda q: q
    """)
    assert names.module_names(code) == {"osp", "json", "z", "A", "f", "G", "C", "i", "handled", "sq", "sq2", "w", "lam"}
    assert names.module_names("def broken(:\n") == set()


def test_check_names_only_objects_to_the_notebooks_own_names():
    included = includes.Included()
    # a name nobody defines is the script's own bug, not the notebook's: no objection here
    includes.check_names("print(undefined_here)\n", included, notebook_names={"other": "x"})
    with pytest.raises(includes.IncludeError, match=r"helper \(defined in cell 2 of nb.ipynb\)"):
        includes.check_names("helper()\n", included, notebook_names={"helper": "defined in cell 2 of nb.ipynb"})
    includes.check_names("helper()\n", includes.Included(cells=[("t", "def helper(): pass\n")]),
                         notebook_names={"helper": "defined in cell 2 of nb.ipynb"})
