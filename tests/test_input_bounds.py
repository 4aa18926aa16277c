"""Every input is bounded, and every refusal is one clear line before anything is written, on
each surface a user has: the magics (UsageError), the Python API (the error class) and the
`sm-magic` command (one `sm-magic: ...` line on stderr, exit status 2 for a usage mistake and 1
for a runtime problem, never a traceback). Issue 11, findings 10 to 13."""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from IPython.core.error import UsageError

import sm_magic
from sm_magic import errors
from sm_magic.backends import BackendError
from sm_magic.bundle.build import BundleError
from sm_magic.cli.export import ExportError
from sm_magic.cli.main import main
from sm_magic.config.model import MAX_ARG_CHARS, ConfigError, TrainConfig
from sm_magic.config.safe_yaml import safe_yaml
from sm_magic.jobs.job import JobFailedError
from sm_magic.jobs.registry import Registry, RegistryError
from sm_magic.metrics.parser import MetricsError
from sm_magic.plan import planner as api

# Nine levels of nine aliases: 387 bytes that expand to 9**9 (387 million) strings.
BOMB = textwrap.dedent("""\
    compute_environment: AMAZON_SAGEMAKER
    additional_args:
      a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
      b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
      c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
      d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
      e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
      f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
      g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
      h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
      i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
""")


def nothing_written(sm_env):
    jobs = sm_env / "sm_jobs"
    assert not jobs.exists() or not any(jobs.iterdir())
    assert Registry().list() == []


def usage_error(ip, line, cell="print(1)\n") -> str:
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("sagemaker_train", line, cell)
    return str(err.value)


def cli_fails(capsys, argv, status=2) -> str:
    """`sm-magic ARGV` fails with `status` and one line on stderr, no traceback; that line."""
    assert main(argv) == status
    err = capsys.readouterr().err
    assert err.startswith("sm-magic: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()


# -- the one error base --------------------------------------------------------------------

def test_every_user_facing_error_has_the_one_base_and_keeps_its_old_one():
    from sm_magic.bundle.git_source import GitSourceError
    from sm_magic.bundle.includes import IncludeError
    from sm_magic.plan.train_line import LineError
    from sm_magic.software.images import ImageError
    from sm_magic.software.requirements import RequirementsError
    from sm_magic.software.wheelhouse import WheelhouseError

    usage = [ConfigError, api.LaunchError, BundleError, IncludeError, MetricsError, ExportError,
             RequirementsError, WheelhouseError, GitSourceError, LineError]
    runtime = [BackendError, RegistryError, JobFailedError]
    for cls in usage:
        assert issubclass(cls, errors.UsageProblem) and issubclass(cls, ValueError) and cls.exit_code == 2, cls
    for cls in runtime:
        assert issubclass(cls, errors.RuntimeProblem) and issubclass(cls, RuntimeError) and cls.exit_code == 1, cls
    # No image fits the versions or instance type asked for: the user's to change, whichever
    # backend would have run it.
    assert issubclass(ImageError, errors.UsageProblem) and issubclass(ImageError, ValueError) and ImageError.exit_code == 2


# -- finding 10: a YAML alias bomb, refused before it expands ----------------------------------

_BOMB_SURFACES = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from pathlib import Path
import nbformat
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
import sm_magic
from sm_magic.plan import planner as api
from sm_magic.cli.main import main
from sm_magic.config.model import ConfigError, TrainConfig
from sm_magic.config.safe_yaml import safe_yaml

bomb, out = Path(sys.argv[1]), {}
def refused(name, call, errors):
    try:
        call()
        out[name] = "accepted"
    except errors as e:
        out[name] = str(e)
refused("from_yaml", lambda: TrainConfig.from_yaml(bomb), ConfigError)
refused("dry_run", lambda: api.dry_run("print(1)\n", config=str(bomb)), ConfigError)
refused("form_field", lambda: safe_yaml(bomb.read_text().split("additional_args:\n", 1)[1]), Exception)
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "sm_magic")
refused("config_magic", lambda: ip.run_line_magic("sagemaker_config", f"--config {bomb}"), UsageError)
refused("train_magic", lambda: ip.run_cell_magic("sagemaker_train", f"--dry-run --config {bomb}", "print(1)\n"),
        UsageError)
nb = nbformat.v4.new_notebook()
nb.cells = [nbformat.v4.new_code_cell(f"%%sagemaker_train --config {bomb}\nprint(1)\n")]
nbformat.write(nb, "bomb.ipynb")
out["export_status"] = main(["export", "bomb.ipynb", "--out", "exported"])
print(json.dumps(out))
"""


@pytest.mark.jobs
def test_a_yaml_alias_bomb_is_refused_at_load_on_every_surface(sm_env):
    """387 bytes that would expand to gigabytes: run under a 2 GB address-space cap and a
    timeout, so that a regression fails this test instead of taking the machine down."""
    bomb = sm_env / "bomb.yaml"
    bomb.write_text(BOMB)
    proc = subprocess.run([sys.executable, "-c", _BOMB_SURFACES, str(bomb)], capture_output=True, text=True,
                          cwd=sm_env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out.pop("export_status") == 2
    assert "bomb.yaml" in proc.stderr and "alias" in proc.stderr and "Traceback" not in proc.stderr
    for surface, message in out.items():
        assert "an alias (*name): a config file holds no anchors or aliases" in message, (surface, message)
    assert "line 4, column 10" in out["from_yaml"]
    assert not (sm_env / "exported").exists()


def test_config_files_are_bounded_in_size_depth_and_integer_length(ip, sm_env):
    (sm_env / "deep.yaml").write_text("additional_args: " + "[" * 20000 + "]" * 20000 + "\n")
    assert "deep.yaml line 1, column 49: nested more than 32 levels deep" in usage_error(ip, "--config deep.yaml")
    (sm_env / "big.yaml").write_text("# padding\n" * 120_000)
    assert "big.yaml is larger than 1024 KiB" in usage_error(ip, "--config big.yaml")
    (sm_env / "digits.yaml").write_text("num_machines: 1" + "0" * 5000 + "\n")
    assert "an integer of more than 40 digits" in usage_error(ip, "--config digits.yaml")
    # An anchor without an alias is harmless and accepted; an alias is refused, merge keys included.
    assert safe_yaml("a: &x 1\nb: 2\n") == {"a": 1, "b": 2}
    with pytest.raises(Exception, match="anchors or aliases"):
        safe_yaml("base: &b {x: 1}\nother:\n  <<: *b\n")
    nothing_written(sm_env)


# -- finding 11: upper bounds --------------------------------------------------------------------

def test_instance_count_is_bounded_on_every_surface(ip, sm_env):
    assert "--instance-count: at most 512 instances (got 10000)" in usage_error(
        ip, "--instance-count 10000 --instance-type ml.g5.xlarge --backend sagemaker --dry-run")
    with pytest.raises(ConfigError, match="at most 512 instances"):
        sm_magic.launch("print(1)\n", instance_count=10_000)
    with pytest.raises(ConfigError, match="--instance-count: expected a whole number, got true"):
        sm_magic.launch("print(1)\n", instance_count=True)
    (sm_env / "many.yaml").write_text("num_machines: 100000\n")
    with pytest.raises(ConfigError, match="many.yaml line 1: num_machines: at most 512 instances"):
        TrainConfig.from_yaml(sm_env / "many.yaml")
    nothing_written(sm_env)


@pytest.mark.parametrize("yaml_value", ["1.0e+29", "1e29", "100000000000000000000000000000", "3000000"])
def test_max_run_beyond_the_api_limit_is_refused_from_yaml(sm_env, yaml_value):
    (sm_env / "c.yaml").write_text(f"additional_args:\n  max_run: {yaml_value}\n")
    with pytest.raises(ConfigError, match=r"max_run: at most 2419200 s \(28 days\), SageMaker's limit"):
        TrainConfig.from_yaml(sm_env / "c.yaml")


@pytest.mark.parametrize("value, message", [
    (1e29, "at most 2419200 s"), (10**40, "at most 2419200 s"), (float("inf"), "expected a whole number, got inf"),
    (True, "expected a whole number, got true"), (2.5, "expected a whole number, got 2.5"),
    (0, "greater than or equal to 1"),
])
def test_max_run_and_max_wait_are_bounded_from_python(sm_env, value, message):
    with pytest.raises(ConfigError, match=message):
        sm_magic.launch("print(1)\n", max_run=value)
    with pytest.raises(ConfigError, match=message):
        sm_magic.launch("print(1)\n", use_spot_instances=True, max_wait=value)
    nothing_written(sm_env)


def test_a_whole_float_is_still_a_whole_number(sm_env):
    assert TrainConfig(max_run=3600.0, num_machines=2.0).max_run == 3600
    (sm_env / "c.yaml").write_text("additional_args:\n  max_run: '7200'\n")
    assert TrainConfig.from_yaml(sm_env / "c.yaml").max_run == 7200


def test_a_huge_script_argument_is_refused_before_anything_is_written(ip, sm_env):
    ip.user_ns["blob"] = "x" * 200_000
    message = usage_error(ip, "-- --data {blob}")
    assert f"is 200000 characters long: at most {MAX_ARG_CHARS} per argument" in message
    assert "SageMaker's limit on a hyperparameter value, applied on every backend" in message
    assert len(message) < 600  # the argument itself is not echoed in full
    # Many arguments within the per-argument bound, over the total.
    ip.user_ns["many"] = " ".join(["y" * 2000] * 40)
    assert "bytes in all: at most 65536" in usage_error(ip, "-- {many}")
    with pytest.raises(ConfigError, match="at most 1000"):
        sm_magic.launch("print(1)\n", args=["-v"] * 1001)
    nothing_written(sm_env)


@pytest.mark.parametrize("arg, message", [
    ("a\0b", "holds a NUL byte, which no command line can carry"),
    ("caf\udce9", "which is not text (a lone surrogate)"),
])
def test_a_script_argument_that_no_command_line_can_carry_is_refused(ip, sm_env, arg, message):
    with pytest.raises(ConfigError, match=r"script argument 2 .*" + re.escape(message)):
        sm_magic.launch("print(1)\n", args=["--name", arg])
    with pytest.raises(ConfigError, match=re.escape(message)):
        api.dry_run("print(1)\n", args=["--name", arg], backend="sagemaker", instance_type="ml.m5.large")
    ip.user_ns["bad"] = arg
    assert message in usage_error(ip, "-- --name {bad}")
    nothing_written(sm_env)


def test_script_arguments_given_as_one_string_are_refused(sm_env):
    with pytest.raises(ConfigError, match=r"give a list of strings, e.g. \['--epochs', '3'\]"):
        sm_magic.launch("print(1)\n", args="--epochs 3")
    nothing_written(sm_env)


# -- finding 12: one line, never a traceback ----------------------------------------------------

@pytest.mark.parametrize("content, message", [
    ("base_job_name: café\n".encode("latin-1"), "is not UTF-8 text (byte 19, line 1): save it as UTF-8"),
    ("num_machines: 1\n".encode("utf-16"), "is UTF-16 text: save it as UTF-8"),
    ("num_machines: 1\n".encode("utf-16-le"), "is not UTF-8 text (it holds NUL bytes"),
    (bytes(range(256)) * 4, "is not UTF-8 text (it holds NUL bytes"),
])
def test_a_config_file_that_is_not_utf8_is_one_clear_error(ip, sm_env, capsys, content, message):
    (sm_env / "enc.yaml").write_bytes(content)
    assert f"config file enc.yaml {message}" in usage_error(ip, "--config enc.yaml")
    with pytest.raises(UsageError, match="save it as UTF-8"):
        ip.run_line_magic("sagemaker_config", "--config enc.yaml")
    with pytest.raises(ConfigError, match="save it as UTF-8"):
        TrainConfig.from_yaml(sm_env / "enc.yaml")
    nothing_written(sm_env)


def test_other_text_files_a_launch_reads_are_utf8_or_one_clear_error(ip, sm_env):
    (sm_env / "req.txt").write_bytes(b"numpy\xff\n")
    assert "req.txt is not UTF-8 text: save it as UTF-8" in usage_error(ip, "--requirements req.txt")
    (sm_env / "inputs.tsv").write_bytes(b"name\turi\ntrain\t\xff\n")
    with pytest.raises(api.LaunchError, match="inputs file .*inputs.tsv cannot be read"):
        sm_magic.launch("print(1)\n", sagemaker_inputs_file=str(sm_env / "inputs.tsv"))
    nothing_written(sm_env)


def test_a_utf8_bom_is_fine(sm_env):
    (sm_env / "bom.yaml").write_bytes("\ufeffnum_machines: 2\ndistributed_type: DATA_PARALLEL\n".encode())
    assert TrainConfig.from_yaml(sm_env / "bom.yaml").num_machines == 2


@pytest.mark.parametrize("cell, message", [
    ("import os\nname = 'caf\udce9'\nprint(name)\n", "line 2 of the cell holds '\\udce9', a lone surrogate"),
    ("print(1)\nprint(2)\0\n", "line 2 of the cell holds a NUL byte"),
])
def test_a_cell_that_no_file_can_hold_is_refused_naming_the_line(ip, sm_env, cell, message):
    assert message in usage_error(ip, "", cell)
    assert message in usage_error(ip, "--dry-run", cell)
    with pytest.raises(BundleError, match="nothing was written or launched"):
        sm_magic.launch(cell)
    nothing_written(sm_env)


def test_cli_usage_mistakes_are_one_line_and_exit_2(sm_env, capsys):
    assert "argument --limit: must be 1 or more, got -1" in cli_fails(capsys, ["jobs", "--limit", "-1"])
    assert "argument --limit: expected a whole number, got 'ten'" in cli_fails(capsys, ["jobs", "--limit", "ten"])
    assert "argument --tail: must be 0 or more" in cli_fails(capsys, ["logs", "x", "--tail", "-3"])
    assert "argument --timeout: must be 0 or more" in cli_fails(capsys, ["wait", "x", "--timeout", "-1"])
    assert "argument --timeout: must be 0 or more, got nan" in cli_fails(capsys, ["wait", "x", "--timeout", "nan"])
    assert "unrecognized arguments: --bogus" in cli_fails(capsys, ["jobs", "--bogus"])
    assert "the following arguments are required: command" in cli_fails(capsys, [])
    assert "no job named nope in the registry" in cli_fails(capsys, ["logs", "nope"])


def test_cli_runtime_problems_are_one_line_and_exit_1(sm_env, capsys, monkeypatch):
    (sm_env / "registry-dir").mkdir()
    monkeypatch.setenv("SM_MAGIC_REGISTRY", str(sm_env / "registry-dir"))
    assert "is a directory" in cli_fails(capsys, ["jobs"], status=1)
    # An OSError the command did not foresee is still one line.
    monkeypatch.setattr("sm_magic.cli.main.list_jobs", lambda limit: open(sm_env / "no" / "such"))
    assert "No such file or directory" in cli_fails(capsys, ["jobs"], status=1)


def test_export_to_a_directory_that_cannot_be_written_is_one_line(sm_env, capsys):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%%sagemaker_train --name out-1\nprint(1)\n")]
    nbformat.write(nb, sm_env / "nb.ipynb")
    assert "cannot write the bundles to /proc/nope" in cli_fails(capsys, ["export", "nb.ipynb", "--out", "/proc/nope"])
    (sm_env / "a-file").write_text("")
    assert "cannot write the bundles to a-file/sub" in cli_fails(capsys, ["export", "nb.ipynb", "--out", "a-file/sub"])


@pytest.fixture
def bundle(sm_env, capsys):
    """An exported bundle (one cell, with a metric definition), for `sm-magic run`."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%%sagemaker_train --name exported-1 --metric loss=loss=([0-9.]+)\n"
                                          "print('loss=0.5')\n")]
    nbformat.write(nb, sm_env / "nb.ipynb")
    assert main(["export", "nb.ipynb", "--out", "out"]) == 0
    capsys.readouterr()
    return sm_env / "out" / "exported-1"


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data)))


def _set(section, key, value):
    return lambda d: {**d, section: {**d.get(section, {}), key: value}} if section else {**d, key: value}


TAMPERED = {
    "job.json is a list": ("job.json", lambda d: [d], "job.json: expected a JSON object, found a list"),
    "inputs is a list": ("job.json", _set("job", "inputs", ["train"]),
                         "job.json: `job.inputs` should be an object of channel: URI strings, found a list"),
    "name is a number": ("job.json", _set("job", "name", 5), "`job.name` should be a job name (a string) or null"),
    "metric without regex": ("job.json", _set("job", "metrics", [{"Name": "loss"}]),
                             '`job.metrics` should be a list of {"Name": ..., "Regex": ...} objects'),
    "metric regex invalid": ("job.json", _set("job", "metrics", [{"Name": "loss", "Regex": "loss=("}]),
                             "metric 'loss'"),
    "interruptions not numbers": ("job.json", _set("job", "simulate_interruptions", ["soon"]),
                                  "`job.simulate_interruptions` should be a list of numbers"),
    "script escapes the bundle": ("job.json", _set("code", "script", "../../nb.ipynb.py"),
                                  "`code.script` '../../nb.ipynb.py' is not a .py path inside the bundle"),
    "script is absolute": ("job.json", _set("code", "script", "/etc/passwd.py"),
                           "is not a .py path inside the bundle"),
    "args not strings": ("job.json", _set(None, "args", [1, 2]), "`args` should be a list of strings"),
    "code is a string": ("job.json", _set(None, "code", "train.py"), "`code` should be an object, found a string"),
}


@pytest.mark.parametrize("case", TAMPERED)
def test_run_refuses_a_malformed_bundle_in_one_line(bundle, sm_env, capsys, case):
    file, change, message = TAMPERED[case]
    _edit(bundle / file, change)
    assert message in cli_fails(capsys, ["run", str(bundle)])
    nothing_written(sm_env)


def test_run_refuses_unreadable_bundle_files_in_one_line(bundle, sm_env, capsys):
    (bundle / "job.json").write_bytes(b"\xff\xfe{}")
    assert "job.json is not UTF-8 text" in cli_fails(capsys, ["run", str(bundle)])
    (bundle / "job.json").write_text("[" * 100_000 + "]" * 100_000)
    assert "job.json: nested too deeply" in cli_fails(capsys, ["run", str(bundle)])
    (bundle / "job.json").write_text(json.dumps({"format": 2}))
    (bundle / "train.py").write_bytes(b"print('caf\xe9')\n")
    assert "cannot read the entry script train.py (it is not UTF-8 text)" in cli_fails(capsys, ["run", str(bundle)])
    nothing_written(sm_env)


def test_run_refuses_a_huge_or_nul_argument_in_one_line(bundle, sm_env, capsys):
    assert "per argument" in cli_fails(capsys, ["run", str(bundle), "--", "--data", "x" * 200_000])
    nothing_written(sm_env)


# -- finding 13: channels as SageMaker takes them, on every backend ---------------------------------

@pytest.mark.parametrize("flag, message", [
    ("code={data}", "input channel name 'code' is used by the SageMaker SDK itself"),
    ("sm_drivers={data}", "is used by the SageMaker SDK itself"),
    ("{long}={data}", "(1 to 64 of them)"),
    ("my-data={data}", "a name may use only letters, digits and _"),
    ("train=", "input channel train has no URI: give an s3:// prefix or a local directory"),
    ("train=s3://", "names no bucket"),
    ("train={data}/rows.csv", "rows.csv is a file, and a channel is a directory"),
    ("train", "expected NAME=URI"),
])
def test_channels_are_checked_the_same_on_the_local_backend(ip, sm_env, flag, message):
    data = sm_env / "data"
    data.mkdir()
    (data / "rows.csv").write_text("1,2\n")
    ip.user_ns.update(data=str(data), long="c" * 70)
    assert message in usage_error(ip, f"--backend local --input {flag}")
    assert message in usage_error(ip, f"--backend sagemaker --instance-type ml.m5.large --dry-run --input {flag}")
    nothing_written(sm_env)


def test_channels_from_python_are_checked_too(sm_env):
    data = sm_env / "data"
    data.mkdir()
    (data / "rows.csv").write_text("1,2\n")
    with pytest.raises(BundleError, match="1 to 64"):
        sm_magic.launch("print(1)\n", inputs=["train\n=" + str(data)])  # a name with a newline
    with pytest.raises(api.LaunchError, match="is a file"):
        sm_magic.launch("print(1)\n", inputs={"train": data / "rows.csv"})
    with pytest.raises(api.LaunchError, match="has no URI"):
        sm_magic.launch("print(1)\n", inputs=[("train", " ")])
    with pytest.raises(api.LaunchError, match="is not a valid training job name"):
        sm_magic.launch("print(1)\n", name="job-1\n")
    nothing_written(sm_env)
    # A mapping of name: path (a Path too) is a way to give channels.
    text = api.dry_run("print(1)\n", inputs={"train": data})
    assert f"Inputs: train={data}" in text


def test_an_inputs_file_row_is_checked_naming_its_line(sm_env):
    (sm_env / "rows.csv").write_text("1\n")
    (sm_env / "inputs.tsv").write_text("channel\turi\ntrain\t./rows.csv\n")
    with pytest.raises(api.LaunchError, match=r"inputs.tsv, line 2: input channel train: ./rows.csv is a file"):
        sm_magic.launch("print(1)\n", sagemaker_inputs_file=str(sm_env / "inputs.tsv"))
    nothing_written(sm_env)


def test_export_refuses_a_file_channel(sm_env, capsys):
    (sm_env / "rows.csv").write_text("1\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%%sagemaker_train --input train=rows.csv\nprint(1)\n")]
    nbformat.write(nb, sm_env / "nb.ipynb")
    assert main(["export", "nb.ipynb", "--out", "out"]) == 2
    assert "cell 1: --input 'train=rows.csv': input channel train: rows.csv is a file" in capsys.readouterr().err
    assert not (sm_env / "out").exists()
