"""The job bundle: what build_bundle writes, what it refuses, and how sm_entry.py launches it."""

import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

import sm_magic.container.entry as sm_entry_module
from sm_magic.bundle.build import ENTRY_COMMAND, BundleCode, BundleError, JobSpec, build_bundle, check_source, hyperparameters_from_args
from sm_magic.config.model import TrainConfig
from sm_magic.container.entry import launch_command
from sm_magic.plan import software as plan_software
from sm_magic.plan.checks import LaunchError
from sm_magic.plan.planner import plan
from sm_magic.plan.request import LaunchRequest

# Arguments as a user types them after the magic: a store_true flag, --k=v, a negative number,
# a value with a space, and shell metacharacters that must never reach a shell.
TRICKY_ARGS = ["--fp16", "--lr=5e-5", "--offset", "-1", "--name", "a b", "--tag", "$(touch pwned)"]

ARGV_SCRIPT = """\
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "argv.json"), "w", encoding="utf-8") as f:
    f.write(json.dumps(sys.argv[1:]))
"""


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Keep every test away from the user's home and accelerate default config."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg_cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def sm_home(tmp_path, monkeypatch):
    """The working directory (where the local backend's jobs would go), empty."""
    home = tmp_path / "work"
    home.mkdir()
    monkeypatch.chdir(home)
    return home


@pytest.fixture
def out_dir(tmp_path):
    """An empty directory bundles are built into (so a test can see everything written)."""
    d = tmp_path / "bundles"
    d.mkdir()
    return d


def option(cmd, name):
    """The value after `name` in an argv list."""
    assert cmd.count(name) == 1, f"{name} appears {cmd.count(name)} times in {cmd}"
    return cmd[cmd.index(name) + 1]


def launcher_part(cmd):
    """The accelerate options, before the script path."""
    return cmd[: next(i for i, c in enumerate(cmd) if c.endswith("train.py"))]


# -- what build_bundle writes -----------------------------------------------------------------


def test_bundle_layout_and_train_py_verbatim(out_dir):
    source = "# the cell\nimport os\n\nprint('héllo', os.getcwd())  \n\n\n"
    dest = out_dir / "job"
    bundle = build_bundle(BundleCode(source), JobSpec(TrainConfig(), ["--epochs", "3"], name="job-1"), dest=dest)
    assert bundle.path == dest
    assert bundle.name == "job-1"
    assert sorted(p.name for p in dest.iterdir()) == [
        "accelerate_config.yaml", "requirements.txt", "sm_entry.py", "sm_launch.json", "sm_magic", "train.py"]
    assert sorted(p.relative_to(dest / "sm_magic").as_posix() for p in (dest / "sm_magic").rglob("*.py")) == [
        "__init__.py", "container/__init__.py", "container/failure.py", "container/failure_board.py",
        "container/runtime.py", "runtime.py"]
    assert (dest / "train.py").read_bytes() == source.encode("utf-8")
    # Nothing else left next to the bundle (no staging directory).
    assert [p.name for p in out_dir.iterdir()] == ["job"]
    assert bundle.entry_command == ENTRY_COMMAND == ("python", "sm_entry.py")


def test_sm_entry_is_the_packaged_entry_verbatim(out_dir):
    bundle = build_bundle(BundleCode("print(1)\n"), JobSpec(TrainConfig(), [], name="j"), dest=out_dir / "b")
    assert (bundle.path / "sm_entry.py").read_bytes() == Path(sm_entry_module.__file__).read_bytes()


def test_sm_launch_json_records_script_args_and_distribution(out_dir):
    cfg = TrainConfig(distributed_type="DATA_PARALLEL", mixed_precision="bf16", use_cpu=True)
    bundle = build_bundle(BundleCode("print(1)\n"), JobSpec(cfg, TRICKY_ARGS, name="j"), dest=out_dir / "b")
    spec = json.loads((bundle.path / "sm_launch.json").read_text(encoding="utf-8"))
    assert spec == {"script": "train.py", "args": TRICKY_ARGS, "distributed_type": "DATA_PARALLEL",
                    "mixed_precision": "bf16", "use_cpu": True, "checkpoint_dir": "/opt/ml/checkpoints"}
    assert bundle.args == TRICKY_ARGS


def test_requirements_pin_third_party_imports_and_skip_stdlib_and_image_packages(out_dir):
    source = ("import os, sys, json\nfrom collections import OrderedDict\nimport yaml\nimport torch\n"
              "from torch import nn\nimport accelerate\n\ndef f():\n    import subprocess\n")
    bundle = build_bundle(BundleCode(source), JobSpec(TrainConfig(), [], name="j"), dest=out_dir / "b")
    lines = (bundle.path / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert lines == bundle.requirements
    assert lines[0] == f"accelerate=={md.version('accelerate')}"
    # PyYAML pinned to the installed version (pip compares names case-insensitively).
    assert f"pyyaml=={md.version('PyYAML')}" in [line.lower() for line in lines]
    # torch: provided by the training image, so named without a version (the image's build stays).
    assert "torch" in lines and not any(line.lower().startswith("torch=") for line in lines)
    provided = [line for line in lines if line.startswith("#")]
    assert len(provided) == 1 and "provided by the training image" in provided[0] and "torch" in provided[0]
    # stdlib imports do not appear; accelerate appears once.
    text = "\n".join(lines)
    for stdlib in ("os", "sys", "json", "collections", "subprocess"):
        assert stdlib not in [line.split("==")[0].split("#")[0].strip() for line in lines]
    assert text.count("accelerate") == 1
    # Every requirement line is one pip understands.
    from packaging.requirements import Requirement
    for line in lines:
        if not line.startswith("#"):
            Requirement(line.split("#")[0].strip())


def test_requirements_of_a_stdlib_only_cell_are_just_accelerate(out_dir):
    bundle = build_bundle(BundleCode("import math\nprint(math.pi)\n"), JobSpec(TrainConfig(), [], name="j"), dest=out_dir / "b")
    assert (bundle.path / "requirements.txt").read_text() == f"accelerate=={md.version('accelerate')}\n"


@pytest.mark.parametrize("distributed, accel_type", [("NO", "NO"), ("DATA_PARALLEL", "MULTI_GPU")])
def test_accelerate_config_yaml_loads_with_accelerates_loader(out_dir, distributed, accel_type):
    cfg = TrainConfig(distributed_type=distributed, mixed_precision="fp16", gpu_ids="0,1")
    bundle = build_bundle(BundleCode("print(1)\n"), JobSpec(cfg, [], name="j"), dest=out_dir / "b")
    path = bundle.path / "accelerate_config.yaml"
    loaded = load_config_from_file(str(path))
    assert isinstance(loaded, ClusterConfig)
    assert loaded.compute_environment.value == "LOCAL_MACHINE"
    assert loaded.distributed_type.value == accel_type
    assert loaded.mixed_precision == "fp16"
    assert loaded.gpu_ids == "0,1"
    assert ClusterConfig.from_yaml_file(str(path)).num_machines == 1
    assert yaml.safe_load(path.read_text())["use_cpu"] is False


def test_bundle_records_hyperparameters_inputs_and_default_lists(out_dir):
    job = JobSpec(TrainConfig(), TRICKY_ARGS, name="j", inputs={"train": "s3://bucket/train"})
    bundle = build_bundle(BundleCode("print(1)\n"), job, dest=out_dir / "b")
    assert bundle.hyperparameters == hyperparameters_from_args(TRICKY_ARGS)
    assert bundle.inputs == {"train": "s3://bucket/train"}
    assert bundle.metric_definitions == []


def _planned(source, config=None, **keywords):
    """The planner's checks of a launch (for export: no registry is asked), the plan closed."""
    keywords = {"backend": "local", **keywords}
    plan(LaunchRequest.from_keywords(source, config or TrainConfig(), **keywords), export=True).close()


@pytest.mark.parametrize("backend", ["local", "sagemaker"])
def test_model_parallel_is_refused_by_the_planner_before_the_image_is_chosen(backend, monkeypatch):
    def chosen(*args, **kwargs):
        raise AssertionError("the training image was chosen")
    monkeypatch.setattr(plan_software, "choose", chosen)
    with pytest.raises(LaunchError) as e:
        _planned("print(1)\n", TrainConfig(distributed_type="MODEL_PARALLEL"), backend=backend)
    msg = str(e.value)
    assert "MODEL_PARALLEL" in msg
    assert "not supported" in msg
    assert "DATA_PARALLEL" in msg  # the fix



@pytest.fixture
def temp_root(tmp_path, monkeypatch):
    """TMPDIR (and tempfile's cached choice) pointed at an empty directory of this test's own."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setenv("TMPDIR", str(root))
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_a_refused_build_without_dest_leaves_no_temporary_directory(tmp_path, temp_root, monkeypatch):
    clashing = tmp_path / "code"
    (clashing / "sm_magic").mkdir(parents=True)
    (clashing / "train.py").write_text("print(1)\n")
    with pytest.raises(BundleError, match="has its own sm_magic"):  # the tree clashes with the bundle's own files
        build_bundle(BundleCode(None, tree=clashing), JobSpec(TrainConfig(), [], name="j"))
    with pytest.raises(BundleError, match="no entry script nope.py"):
        build_bundle(BundleCode(None, tree=tmp_path, script="nope.py"), JobSpec(TrainConfig(), [], name="j"))
    assert list(temp_root.iterdir()) == []

    # A failure while writing, after the temporary directory was made: it is removed too.
    def fail(*args, **kwargs):
        raise OSError("disk full")
    with monkeypatch.context() as m:
        m.setattr(shutil, "copyfile", fail)
        with pytest.raises(OSError, match="disk full"):
            build_bundle(BundleCode("print(1)\n"), JobSpec(TrainConfig(), [], name="j"))
    assert list(temp_root.iterdir()) == []

    bundle = build_bundle(BundleCode("print(1)\n"), JobSpec(TrainConfig(), [], name="j"))
    assert bundle.path.parent.parent == temp_root and (bundle.path / "train.py").is_file()
    shutil.rmtree(bundle.path.parent)


# -- check_source -------------------------------------------------------------------------------


def test_syntax_error_names_line_and_shows_it():
    source = "import os\nx = 1\nif x == 1\n    print(x)\n"
    with pytest.raises(BundleError) as e:
        check_source(source)
    msg = str(e.value)
    assert "line 3" in msg
    assert "if x == 1" in msg
    assert "Nothing was written" in msg


def test_the_planner_refuses_a_syntax_error_before_anything_is_written(sm_home):
    with pytest.raises(BundleError) as e:
        _planned("a = 1\nb = (2,\nc = 3 3\n")
    assert "line" in str(e.value)
    assert list(sm_home.iterdir()) == []


def test_the_planner_checks_a_code_trees_own_entry_script(tmp_path):
    (tmp_path / "train.py").write_text("x = (\n")
    with pytest.raises(BundleError, match="syntax error in the cell, line 1"):
        _planned(None, tree=tmp_path)


def test_indentation_error_names_line():
    with pytest.raises(BundleError) as e:
        check_source("def f():\n    return 1\n  x = 2\n")
    assert "line 3" in str(e.value)
    assert "x = 2" in str(e.value)


@pytest.mark.parametrize("source", ["", "   \n\n", "# only a comment\n", "# one\n   # two\n\n"])
def test_empty_or_comment_only_cell_is_refused(sm_home, source):
    with pytest.raises(BundleError) as e:
        check_source(source)
    assert "empty" in str(e.value)
    with pytest.raises(BundleError, match="empty"):
        _planned(source)
    assert list(sm_home.iterdir()) == []


def test_valid_cells_pass_check_source():
    check_source("print(1)\n")
    check_source("# comment first\nx = 1  # then code\n")
    check_source("from __future__ import annotations\ndef f(x: 'Undefined') -> None:\n    pass\n")


# -- script arguments ---------------------------------------------------------------------------


def test_hyperparameters_from_tricky_args():
    assert hyperparameters_from_args(TRICKY_ARGS) == {
        "fp16": "True", "lr": "5e-5", "offset": "-1", "name": "a b", "tag": "$(touch pwned)"}


def test_hyperparameters_positional_and_trailing_flag():
    assert hyperparameters_from_args(["data.csv", "--epochs", "3", "--verbose"]) == {
        "epochs": "3", "verbose": "True", "_positional": json.dumps(["data.csv"])}
    assert hyperparameters_from_args([]) == {}


def test_launch_command_ends_with_args_exactly_as_typed(out_dir):
    bundle = build_bundle(BundleCode(ARGV_SCRIPT), JobSpec(TrainConfig(), TRICKY_ARGS, name="j"), dest=out_dir / "b")
    spec = json.loads((bundle.path / "sm_launch.json").read_text(encoding="utf-8"))
    env = {"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1", "SM_NUM_GPUS": "0"}
    cmd, _notes = launch_command(spec, env, str(bundle.path))
    assert isinstance(cmd, list) and all(isinstance(c, str) for c in cmd)
    assert cmd[-len(TRICKY_ARGS):] == TRICKY_ARGS
    assert cmd[-len(TRICKY_ARGS) - 1] == os.path.join(str(bundle.path), "train.py")
    assert option(cmd, "--config_file") == os.path.join(str(bundle.path), "accelerate_config.yaml")
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]


@pytest.mark.jobs
def test_entry_runs_script_with_args_exactly_as_typed_and_no_shell(tmp_path, out_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bundle = build_bundle(BundleCode(ARGV_SCRIPT), JobSpec(TrainConfig(), TRICKY_ARGS, name="j"), dest=out_dir / "b")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "HF_HOME": str(tmp_path / "hf_home"),
        "SM_HOSTS": '["algo-1"]',
        "SM_CURRENT_HOST": "algo-1",
        "SM_NUM_GPUS": "0",
    }
    result = subprocess.run([sys.executable, "sm_entry.py"], cwd=bundle.path, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    received = json.loads((bundle.path / "argv.json").read_text(encoding="utf-8"))
    assert received == TRICKY_ARGS
    for where in (bundle.path, tmp_path, Path.cwd(), out_dir):
        assert not (where / "pwned").exists()
    assert not list(tmp_path.rglob("pwned"))


# -- launch_command: ranks, process counts, precision ----------------------------------------


def dp_spec(**kw):
    return {"script": "train.py", "args": [], "distributed_type": "DATA_PARALLEL", "mixed_precision": "no",
            "use_cpu": False, **kw}


def test_data_parallel_two_cpu_hosts_second_host():
    env = {"SM_HOSTS": '["algo-1", "algo-2"]', "SM_CURRENT_HOST": "algo-2", "SM_NUM_GPUS": "0"}
    cmd, notes = launch_command(dp_spec(), env, "/bundle")
    head = launcher_part(cmd)
    assert "--multi_gpu" in head
    assert option(cmd, "--num_machines") == "2"
    assert option(cmd, "--machine_rank") == "1"
    assert option(cmd, "--num_processes") == "4"
    assert option(cmd, "--main_process_ip") == "algo-1"
    assert option(cmd, "--main_process_port") == "29500"
    assert cmd[-1] == os.path.join("/bundle", "train.py")
    assert any("CPU" in n for n in notes)


def test_data_parallel_main_address_from_env():
    env = {"SM_HOSTS": '["algo-1", "algo-2"]', "SM_CURRENT_HOST": "algo-2", "SM_NUM_GPUS": "0",
           "SM_MAGIC_MAIN_ADDR": "10.0.0.7", "SM_MAGIC_MAIN_PORT": "29999"}
    cmd, _ = launch_command(dp_spec(), env, "/bundle")
    assert option(cmd, "--main_process_ip") == "10.0.0.7"
    assert option(cmd, "--main_process_port") == "29999"
    assert option(cmd, "--machine_rank") == "1"


def test_data_parallel_first_host_is_rank_zero_and_gpus_count():
    env = {"SM_HOSTS": '["algo-2", "algo-1"]', "SM_CURRENT_HOST": "algo-1", "SM_NUM_GPUS": "8"}
    cmd, notes = launch_command(dp_spec(mixed_precision="fp16"), env, "/bundle")
    assert option(cmd, "--machine_rank") == "0"
    assert option(cmd, "--num_processes") == "16"
    assert option(cmd, "--main_process_ip") == "algo-1"
    assert option(cmd, "--mixed_precision") == "fp16"
    assert notes == []


def test_fp16_on_cpu_host_falls_back_to_no_with_a_note():
    env = {"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1", "SM_NUM_GPUS": "0"}
    spec = {"script": "train.py", "args": [], "distributed_type": "NO", "mixed_precision": "fp16", "use_cpu": False}
    cmd, notes = launch_command(spec, env, "/bundle")
    assert option(cmd, "--mixed_precision") == "no"
    assert any("fp16" in n and "fp32" in n for n in notes)


def test_fp16_with_use_cpu_on_gpu_host_falls_back_too():
    env = {"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1", "SM_NUM_GPUS": "4"}
    cmd, notes = launch_command(dp_spec(mixed_precision="fp16", use_cpu=True), env, "/bundle")
    assert option(cmd, "--mixed_precision") == "no"
    assert option(cmd, "--num_processes") == "2"
    assert any("fp16" in n for n in notes)


def test_no_distribution_gives_one_process():
    env = {"SM_HOSTS": '["algo-1", "algo-2"]', "SM_CURRENT_HOST": "algo-2", "SM_NUM_GPUS": "4"}
    spec = {"script": "train.py", "args": ["--x"], "distributed_type": "NO", "mixed_precision": "bf16",
            "use_cpu": False}
    cmd, notes = launch_command(spec, env, "/bundle")
    head = launcher_part(cmd)
    assert option(cmd, "--num_processes") == "1"
    assert option(cmd, "--num_machines") == "1"
    assert option(cmd, "--mixed_precision") == "bf16"
    assert "--multi_gpu" not in head
    assert "--cpu" not in head
    assert cmd[-2:] == [os.path.join("/bundle", "train.py"), "--x"]
    assert notes == ["distributed_type NO: one process, so 3 of this host's 4 GPUs stay idle (set "
                     "distributed_type DATA_PARALLEL, or leave it unset, to train on all of them)"]


@pytest.mark.parametrize("hosts, gpus, processes", [(1, 4, 4), (2, 8, 16), (2, 0, 4)])
def test_unset_distribution_trains_on_every_gpu_of_every_host(hosts, gpus, processes):
    names = [f"algo-{i + 1}" for i in range(hosts)]
    env = {"SM_HOSTS": json.dumps(names), "SM_CURRENT_HOST": names[-1], "SM_NUM_GPUS": str(gpus)}
    cmd, notes = launch_command({"script": "train.py", "distributed_type": None}, env, "/bundle")
    assert "--multi_gpu" in launcher_part(cmd)
    assert option(cmd, "--num_processes") == str(processes) and option(cmd, "--num_machines") == str(hosts)
    assert notes[0].startswith(f"distributed_type not set: data parallel, {processes} processes "
                                f"({processes // hosts} per host, {'one per GPU' if gpus else 'on CPU'})")


@pytest.mark.parametrize("gpus", [0, 1])
def test_unset_distribution_on_one_host_with_one_gpu_or_none_is_one_process(gpus):
    env = {"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1", "SM_NUM_GPUS": str(gpus)}
    cmd, notes = launch_command({"script": "train.py", "distributed_type": None}, env, "/bundle")
    assert option(cmd, "--num_processes") == "1" and "--multi_gpu" not in launcher_part(cmd)
    assert not any("distributed_type" in n for n in notes)


def test_no_distribution_on_cpu_host_adds_cpu_flag():
    cmd, _ = launch_command({"script": "train.py", "distributed_type": "NO"}, {}, "/bundle")
    head = launcher_part(cmd)
    assert option(cmd, "--num_processes") == "1"
    assert "--cpu" in head
    assert option(cmd, "--mixed_precision") == "no"


def test_launched_processes_do_not_ask_accelerate_for_smddp():
    # A SageMaker job's environment carries what accelerate's launcher sets; the entry command
    # distributes with accelerate itself, so its processes must not import smdistributed.
    from sm_magic.container.entry import launch_env

    env = {"ACCELERATE_USE_SAGEMAKER": "true", "ACCELERATE_SAGEMAKER_DISTRIBUTED_TYPE": "DATA_PARALLEL",
           "SM_NUM_GPUS": "8"}
    assert launch_env({"distributed_type": "DATA_PARALLEL"}, env)["ACCELERATE_SAGEMAKER_DISTRIBUTED_TYPE"] == "NO"
