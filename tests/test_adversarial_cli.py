"""The command line, config display, failure text and job names, probed as an adversary and a
careless user would. Issue 23, finding 7 (its smaller ones):

- `sm-magic jobs --limit 99999999999999999999` (and `logs --tail` as large) was a raw OverflowError
  (ValueError): a usage error now, exit status 2;
- `sm-magic logs $'\\xff\\xfe'` (a name with bytes that are not UTF-8) was a raw UnicodeEncodeError,
  in `stop` and `wait` too: one line, exit status 2;
- a FailureReason's terminal escapes (`ESC]0;...BEL` retitles the terminal) reached the screen, and
  a local job's FailureReason ran to 1,054 characters where SageMaker's cap is 1,024;
- `%sagemaker_config --config c.yaml` printed `additional_args.environment` credentials (an AWS
  key and its secret, a Hugging Face token), and so did dry runs, the config form and the
  notebook it is saved in; `sm-magic export` wrote them into the bundle's config.yaml;
- a FIFO given as `--config` blocked the magic and `sm-magic export` until interrupted;
- 10 threads calling `sm_magic.launch` at once: default names collided, 2 of 10 refused.

Each test is one probe, named for what the user sees; the CLI runs as a real process.
"""

import json
import os
import subprocess
import sys
import textwrap
import threading

import nbformat
import pytest
import yaml
from IPython.core.error import UsageError

import sm_magic
from sm_magic.config.model import TrainConfig
from sm_magic.container.failure import MAX_REASON
from sm_magic.jobs import lookup
from sm_magic.jobs.job import JobFailedError
from sm_magic.jobs.registry import Registry
from sm_magic.plan import planner as api

BOUNDED_S = 60  # what a probe that used to hang may take before it counts as hanging

AWS_KEY = "AKIAIOSFODNN7EXAMPLQ"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
HF_TOKEN = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
SECRETS = (AWS_KEY, AWS_SECRET, HF_TOKEN, "s3cr3t-passw0rd")
CREDENTIAL_CONFIG = textwrap.dedent(f"""\
    compute_environment: AMAZON_SAGEMAKER
    ec2_instance_type: local
    additional_args:
      environment:
        AWS_ACCESS_KEY_ID: {AWS_KEY}
        AWS_SECRET_ACCESS_KEY: {AWS_SECRET}
        HF_TOKEN: {HF_TOKEN}
        DB_PASSWORD: s3cr3t-passw0rd
        PLAIN: hello
""")


def cli(*argv, timeout=BOUNDED_S, **env):
    """`sm-magic ARGV` as a real process (arguments may be bytes, as a shell passes them)."""
    return subprocess.run([sys.executable, "-m", "sm_magic.cli.main", *argv], capture_output=True, timeout=timeout,
                          env={**os.environ, **env})


def one_line_error(out, status=2, lines=1) -> str:
    """The process failed with `status` and said why in one `sm-magic: ` line (an export: a
    line per cell under it); that text."""
    err = out.stderr.decode("utf-8")
    assert out.returncode == status, (out.returncode, err)
    assert err.startswith("sm-magic: ") and err.count("\n") == lines, err
    assert "Traceback" not in err
    return err.strip()


def notebook(path, line):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"%%sagemaker_train {line}\nprint(1)\n")]
    nbformat.write(nb, str(path))


# -- numbers beyond any listing ----------------------------------------------------------------

def test_jobs_limit_beyond_any_count_is_a_usage_error_not_an_overflow(sm_env):
    err = one_line_error(cli("jobs", "--limit", "99999999999999999999"))
    assert "--limit" in err and "at most" in err
    # The Python API answers every job for a limit past the registry's integers.
    assert lookup.list_jobs(limit=99999999999999999999) == []


def test_logs_tail_beyond_any_log_is_a_usage_error(sm_env):
    err = one_line_error(cli("logs", "some-job", "--tail", "99999999999999999999"))
    assert "--tail" in err and "at most" in err


# -- names that are not text --------------------------------------------------------------------

@pytest.mark.parametrize("command", ["logs", "stop", "wait"])
def test_a_name_of_undecodable_bytes_is_one_line_not_a_unicode_error(sm_env, command):
    err = one_line_error(cli(command, b"\xff\xfe"))
    assert "\\xff\\xfe" in err and "not UTF-8" in err and "sm-magic jobs" in err


def test_the_registry_finds_no_job_of_an_undecodable_name(sm_env):
    name = os.fsdecode(b"\xff\xfe")
    assert Registry().get(name) is None
    with pytest.raises(lookup.AttachError, match="no job named"):
        lookup.attach_job(name)
    with pytest.raises(sm_magic.LaunchError, match="no job or sweep named"):
        sm_magic.attach(name)   # the public attach looks for a sweep of that name too


# -- what a failed job says ----------------------------------------------------------------------

# A script whose exception holds a terminal title escape and 2,000 characters.
HOSTILE_FAILURE = 'raise RuntimeError("\\x1b]0;pwned\\x07\\x1b[2J" + "x" * 2000)\n'


def _reason_is_shown_literally(reason: str) -> None:
    assert not any(c in reason for c in "\x1b\x07\x9b\r"), repr(reason[:80])
    assert len(reason) <= MAX_REASON, len(reason)
    assert reason.startswith("AlgorithmError: RuntimeError: ")
    assert reason.endswith("[train.py, line 1] (exit code 1)")  # where it failed survives the cut


@pytest.mark.jobs
def test_wait_shows_a_failure_reason_without_its_escapes_and_within_the_cap(sm_env):
    job = sm_magic.launch(HOSTILE_FAILURE, name="hostile-1")
    out = cli("wait", "hostile-1")
    err = one_line_error(out, status=1)
    assert b"\x1b]" not in out.stdout and b"\x07" not in out.stdout
    _reason_is_shown_literally(err.removeprefix("sm-magic: training job hostile-1 failed: "))
    _reason_is_shown_literally(job.failure_reason)


@pytest.mark.jobs
def test_a_failed_cell_shows_the_reason_without_its_escapes(ip, capsys):
    result = ip.run_cell(f"%%sagemaker_train --wait --name hostile-2\n{HOSTILE_FAILURE}")
    assert isinstance(result.error_in_exec, JobFailedError)
    _reason_is_shown_literally(result.error_in_exec.reason)
    out = capsys.readouterr().out
    assert "\x1b]0;" not in out and "\x07" not in out and "\x1b[2J" not in out


# -- credentials in a config ------------------------------------------------------------------

@pytest.fixture
def credential_config(sm_env):
    path = sm_env / "c.yaml"
    path.write_text(CREDENTIAL_CONFIG)
    return path


def _masked(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    assert "PLAIN: hello" in text  # what is not a credential is shown as it is
    assert "AWS_ACCESS_KEY_ID: '<hidden: an AWS access key id>'" in text
    assert "AWS_SECRET_ACCESS_KEY: '<hidden: an AWS secret access key>'" in text


def test_config_magic_masks_credentials_in_additional_args(ip, credential_config, capsys):
    ip.run_line_magic("sagemaker_config", f"--config {credential_config}")
    _masked(capsys.readouterr().out)


def test_dry_run_masks_credentials_in_additional_args(ip, credential_config, capsys):
    ip.run_cell_magic("sagemaker_train", f"--dry-run --config {credential_config}", "print(1)\n")
    _masked(capsys.readouterr().out)
    _masked(api.dry_run("print(1)\n", config=str(credential_config)))


@pytest.mark.jobs
def test_sagemaker_dry_run_masks_tokens_in_the_request_environment(sm_env, monkeypatch):
    for key in [k for k in os.environ if k.startswith(("AWS_", "SAGEMAKER_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(sm_env))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(sm_env / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(sm_env / "none"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing may be asked of AWS
    config = sm_env / "sm.yaml"
    config.write_text(f"compute_environment: AMAZON_SAGEMAKER\nec2_instance_type: ml.m5.large\nadditional_args:\n"
                      f"  environment:\n    HF_TOKEN: {HF_TOKEN}\n    DB_PASSWORD: s3cr3t-passw0rd\n    PLAIN: hello\n")
    text = api.dry_run("print(1)\n", config=str(config))
    request = json.loads(text[text.index("CreateTrainingJob request:") + len("CreateTrainingJob request:"):])
    assert {k: request["Environment"][k] for k in ("HF_TOKEN", "DB_PASSWORD", "PLAIN")} == {
        "HF_TOKEN": "<hidden: a Hugging Face token>", "DB_PASSWORD": "<hidden: a credential, by its name>",
        "PLAIN": "hello"}
    for secret in SECRETS:
        assert secret not in text


def test_config_form_masks_credentials_and_saving_keeps_them(credential_config):
    from sm_magic.widgets.form import ConfigForm

    form = ConfigForm(TrainConfig.from_yaml(credential_config), credential_config)
    shown = form.controls["additional_args"].value
    for secret in SECRETS:
        assert secret not in shown
    static = form.static_bundle()  # what the saved notebook keeps
    for secret in SECRETS:
        assert secret not in static["text/html"] and secret not in static["text/plain"]
    # Saving an unedited form writes back what the file held, not the masks.
    form.controls["additional_args"].value = shown.replace("PLAIN: hello", "PLAIN: changed")
    form.save()
    env = yaml.safe_load(credential_config.read_text())["additional_args"]["environment"]
    assert env == {"AWS_ACCESS_KEY_ID": AWS_KEY, "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "HF_TOKEN": HF_TOKEN,
                   "DB_PASSWORD": "s3cr3t-passw0rd", "PLAIN": "changed"}


@pytest.mark.jobs
def test_export_refuses_to_write_credentials_into_a_bundle(sm_env, credential_config):
    notebook(sm_env / "nb.ipynb", f"--config {credential_config}")
    err = one_line_error(cli("export", "nb.ipynb"), lines=2)
    assert "AWS_ACCESS_KEY_ID" in err and "HF_TOKEN" in err and "credentials" in err
    for secret in SECRETS:
        assert secret not in err
    assert not (sm_env / "nb_export").exists() or not any((sm_env / "nb_export").rglob("config.yaml"))


@pytest.mark.jobs
def test_a_launch_with_credentials_in_its_config_records_none(sm_env, credential_config):
    job = sm_magic.launch("print(1)\n", config=str(credential_config), name="creds-1", wait=True)
    assert job.status == "Completed"
    record = json.dumps(vars(Registry().get("creds-1")), default=str)
    stored = [p for p in (sm_env / "sm_jobs" / "creds-1").rglob("*") if p.is_file()]
    for secret in SECRETS:
        assert secret not in record
        assert not [p for p in stored if secret.encode() in p.read_bytes()]


# -- a FIFO as the config -----------------------------------------------------------------------

def _in_thread(call):
    """`call()` in a thread; what it raised (or returned), or "hung" after BOUNDED_S seconds."""
    result = {}

    def run():
        try:
            result["value"] = call()
        except BaseException as e:  # noqa: BLE001 - reported to the test
            result["value"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(BOUNDED_S)
    return result.get("value", "hung")


@pytest.fixture
def fifo(sm_env):
    path = sm_env / "fifo.yaml"
    os.mkfifo(path)
    yield path
    # A reader still blocked on it (the bug) is let go: a writer that opens and closes it.
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def test_config_magic_refuses_a_fifo_at_once(ip, fifo):
    error = _in_thread(lambda: ip.run_line_magic("sagemaker_config", f"--config {fifo}"))
    assert isinstance(error, UsageError), error
    assert "fifo.yaml" in str(error) and "not a regular file" in str(error)


def test_train_magic_refuses_a_fifo_at_once(ip, fifo):
    error = _in_thread(lambda: ip.run_cell_magic("sagemaker_train", f"--dry-run --config {fifo}", "print(1)\n"))
    assert isinstance(error, UsageError), error
    assert "not a regular file" in str(error)


@pytest.mark.jobs
def test_export_refuses_a_fifo_config_at_once(sm_env, fifo):
    notebook(sm_env / "nb.ipynb", f"--config {fifo}")
    err = one_line_error(cli("export", "nb.ipynb"), lines=2)
    assert "fifo.yaml" in err and "not a regular file" in err


# -- default names ------------------------------------------------------------------------------

@pytest.mark.jobs
def test_ten_threads_launching_at_once_all_get_their_own_name(sm_env):
    start = threading.Barrier(10)
    results: list = [None] * 10

    def launch(i):
        start.wait()
        try:
            results[i] = sm_magic.launch("print('hi')\n")
        except Exception as e:  # noqa: BLE001 - reported by the assertion
            results[i] = e

    threads = [threading.Thread(target=launch, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUNDED_S)
    assert all(isinstance(r, sm_magic.Job) for r in results), [str(r) for r in results]
    names = {job.name for job in results}
    assert len(names) == 10 and {r.name for r in Registry().list()} == names
    for job in results:
        assert job.wait(timeout=BOUNDED_S).status == "Completed"


_LAUNCHER = """
import json, sys, threading
import sm_magic
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()  # the test lets every process go at once
names, start = [], threading.Barrier(4)
def launch():
    start.wait()
    try:
        names.append(sm_magic.launch("print('hi')\\n").name)
    except Exception as e:
        names.append(f"{type(e).__name__}: {e}")
threads = [threading.Thread(target=launch) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(names))
"""


@pytest.mark.jobs
def test_two_processes_launching_at_once_get_distinct_names(sm_env):
    procs = [subprocess.Popen([sys.executable, "-c", _LAUNCHER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline() == "ready\n"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        names = [name for p in procs for name in json.loads(p.communicate(timeout=BOUNDED_S)[0])]
    finally:
        for p in procs:
            p.kill()
    assert len(set(names)) == 8 and all(n.startswith("sm-magic-") for n in names), names
    for name in names:
        assert sm_magic.attach(name).wait(timeout=BOUNDED_S).status == "Completed"


@pytest.fixture
def fifo_named(sm_env):
    made = []

    def make(name):
        made.append(sm_env / name)
        os.mkfifo(made[-1])
        return made[-1]

    yield make
    for path in made:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def test_a_fifo_as_the_requirements_file_is_refused_at_once(ip, fifo_named):
    path = fifo_named("requirements.txt")
    error = _in_thread(lambda: ip.run_cell_magic("sagemaker_train", f"--dry-run --requirements {path}", "print(1)\n"))
    assert isinstance(error, UsageError), error
    assert "requirements.txt" in str(error) and "not a regular file but a FIFO" in str(error)


def test_a_fifo_as_the_metrics_file_is_refused_at_once(ip, sm_env, fifo_named):
    path = fifo_named("metrics.tsv")
    config = sm_env / "c.yaml"
    config.write_text(f"compute_environment: AMAZON_SAGEMAKER\nsagemaker_metrics_file: {path}\n")
    error = _in_thread(lambda: ip.run_cell_magic("sagemaker_train", f"--dry-run --config {config}", "print(1)\n"))
    assert isinstance(error, UsageError), error
    assert "metrics.tsv" in str(error) and "not a regular file but a FIFO" in str(error)


@pytest.mark.jobs
def test_export_refuses_a_fifo_notebook_at_once(sm_env, fifo_named):
    fifo_named("nb.ipynb")
    err = one_line_error(cli("export", "nb.ipynb"))
    assert "nb.ipynb" in err and "not a regular file but a FIFO" in err
