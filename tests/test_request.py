"""One launch path: the `%%sagemaker_train` line as a typed launch request, its JSON form (an
exported bundle's job.json), and the checks every surface gets from api.plan before anything is
written or started. None of these start a job."""

import json
from pathlib import Path

import nbformat
import pytest
from IPython.core.error import UsageError

import sm_magic
from sm_magic.cli.export import launch_bundle, read_request
from sm_magic.cli.main import main
from sm_magic.jobs.registry import Registry
from sm_magic.metrics.parser import MetricDefinition, MetricsError
from sm_magic.plan import planner as api
from sm_magic.plan import train_line
from sm_magic.plan.request import CodeSource, ConfigSource, JobOptions, LaunchRequest, NotebookContext, RequestError

from helpers.jobscripts import EPOCHS_SCRIPT


def _nothing_started(sm_env):
    assert Registry().list() == []
    assert not (sm_env / "sm_jobs").exists() or not any((sm_env / "sm_jobs").iterdir())


def _notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


def test_the_line_parses_to_a_typed_request_and_the_magics_own_flags(sm_env):
    (sm_env / "requirements.txt").write_text("numpy\n")
    request, flags = train_line.parse(
        "--name n-1 --backend local --config c.yaml --instance-type ml.m5.large --input train=s3://b/t "
        "--metric 'loss=loss=([0-9.]+)' --include helpers --simulate-interruption 3 --wait -o job "
        "-- --lr 5e-5 --flag", "print(1)\n")
    assert request.code == CodeSource(cell="print(1)\n", include=("helpers",),
                                      requirements=sm_env / "requirements.txt")  # the file beside the notebook
    assert request.job == JobOptions(name="n-1", backend="local", inputs=["train=s3://b/t"],
                                     metrics=["loss=loss=([0-9.]+)"], simulate_interruptions=(3.0,))
    assert request.config == ConfigSource("c.yaml", {"instance_type": "ml.m5.large"})
    assert request.args == ["--lr", "5e-5", "--flag"]
    assert flags == train_line.MagicFlags(wait=True, out="job")

    request, flags = train_line.parse("--git-repo https://h/r.git --git-commit abc123 --entry src/t.py --dry-run")
    assert (request.code.git_repo, request.code.git_commit, request.code.entry) == ("https://h/r.git", "abc123",
                                                                                     "src/t.py")
    assert request.code.requirements is None  # the repository's own requirements.txt wins
    assert flags.dry_run and not flags.wait and request.config == ConfigSource()


def test_a_request_round_trips_through_its_json_form(tmp_path):
    bundle = tmp_path / "bundle"
    request = LaunchRequest(
        CodeSource(tree=bundle, script="sm_main.py", origin={"notebook": "/n.ipynb", "cell": 3}),
        JobOptions(name="exp-1", backend="local", inputs=[("data", "/data"), "more=s3://b/more"],
                   metrics=[MetricDefinition("loss", "loss=([0-9.]+)"), "acc=acc=([0-9.]+)"],
                   simulate_interruptions=(8.0, 2.5)),
        ConfigSource(bundle / "config.yaml", {"mixed_precision": "fp16"}, accelerate_default=False),
        ["--epochs", "2", "--name", "a b"])
    data = request.to_json(relative_to=bundle)
    assert data["code"]["tree"] == "." and data["config"]["file"] == "config.yaml"
    assert data["job"]["inputs"] == {"data": "/data", "more": "s3://b/more"}
    back = LaunchRequest.from_json(json.loads(json.dumps(data)), bundle / "job.json")
    assert back.code == request.code and back.config == request.config and back.args == request.args
    assert back.job.inputs == [("data", "/data"), ("more", "s3://b/more")]
    assert back.job.metrics == request.job.metrics and back.job.simulate_interruptions == (8.0, 2.5)
    # A request whose config is a TrainConfig object has no file to point to.
    with pytest.raises(TypeError, match="to_yaml"):
        LaunchRequest(CodeSource(cell="print(1)\n"), config=ConfigSource(sm_magic.TrainConfig())).to_json()


@pytest.mark.parametrize("data, message", [
    ({"format": 1}, "format 1, this sm_magic reads 2; export the notebook again"),
    ({"format": 2, "job": {"nmae": "x"}}, "no request has `job.nmae`"),
    ({"format": 2, "config": {"accelerate_default": "no"}}, "`config.accelerate_default` should be true or false"),
])
def test_a_request_that_cannot_be_read_is_refused_naming_the_file(data, message):
    with pytest.raises(RequestError) as e:
        LaunchRequest.from_json(data, Path("/b/job.json"))
    assert str(e.value).startswith("/b/job.json: ") and message in str(e.value)


@pytest.fixture
def exported(sm_env, capsys):
    _notebook(sm_env / "nb.ipynb", "%%sagemaker_train --name exported-1 --metric 'loss=loss=([0-9.]+)' "
              "--input data=data -- --epochs 2\nprint('loss=0.5')\n")
    (sm_env / "data").mkdir()
    assert main(["export", "nb.ipynb", "--out", "out"]) == 0
    capsys.readouterr()
    return sm_env / "out" / "exported-1"


def test_export_writes_the_request_that_run_reads_back(exported, sm_env, monkeypatch):
    request = read_request(exported)
    assert request.code == CodeSource(tree=exported, script="train.py",
                                      origin={"notebook": str(sm_env / "nb.ipynb"), "cell": 1})
    assert request.job == JobOptions(name="exported-1", inputs=[("data", str(sm_env / "data"))],
                                     metrics=[MetricDefinition("loss", "loss=([0-9.]+)")])
    assert request.config == ConfigSource(exported / "config.yaml", accelerate_default=False)
    assert request.args == ["--epochs", "2"]
    # `sm-magic run` plans it as any launch (here shown as a dry run instead of started): the bundle's
    # code and config.yaml, the exported name, inputs and metric definitions.
    monkeypatch.setattr(api.Plan, "launch", api.Plan.dry_run)
    text = launch_bundle(exported)
    assert text.startswith("Dry run: nothing started. Job exported-1 on the local backend.")
    assert "Bundle files: accelerate_config.yaml, requirements.txt, sm_entry.py, sm_launch.json, sm_magic, " \
           "train.py" in text
    assert 'Hyperparameters: {"epochs": "2"}' in text
    assert "Metric definitions: loss=loss=([0-9.]+)" in text and f"Inputs: data={sm_env / 'data'}" in text
    _nothing_started(sm_env)


@pytest.mark.parametrize("change, message", [
    (lambda d: {**d, "format": 1}, "job.json: format 1, this sm_magic reads 2; export the notebook again"),
    (lambda d: {**d, "code": {**d["code"], "tree": "/"}}, "the code of an exported bundle is the bundle directory"),
    (lambda d: {**d, "code": {**d["code"], "git_repo": "https://h/r.git"}}, "no git repository"),
    (lambda d: {**d, "extra": 1}, "job.json: no request has `extra`"),
    (lambda d: {**d, "job": {**d["job"], "simulate_interruptions": [0]}}, "a number above 0"),
])
def test_run_refuses_a_job_json_it_cannot_read_in_one_line(exported, sm_env, capsys, change, message):
    path = exported / "job.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    assert main(["run", str(exported)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sm-magic: ") and message in err and "Traceback" not in err
    _nothing_started(sm_env)


def test_export_refuses_a_simulated_interruption_on_sagemaker_as_the_magic_does(ip, sm_env, capsys):
    line = "--backend sagemaker --instance-type ml.m5.large --simulate-interruption 5"
    with pytest.raises(UsageError) as magic:
        ip.run_cell_magic("sagemaker_train", line, "print(1)\n")
    said = str(magic.value)
    assert said == ("--simulate-interruption works on the local backend only, not sagemaker: there, spot "
                    "interruptions are real")
    _notebook(sm_env / "nb.ipynb", f"%%sagemaker_train {line}\nprint(1)\n")
    assert main(["export", "nb.ipynb", "--out", "out"]) == 2
    assert capsys.readouterr().err == f"sm-magic: cannot export nb.ipynb; nothing was written:\ncell 1: {said}\n"
    assert not (sm_env / "out").exists()
    _nothing_started(sm_env)


def test_a_bad_metric_definition_is_refused_before_any_job_is_registered_or_started(ip, sm_env, monkeypatch):
    calls = []
    monkeypatch.setattr(Registry, "add", lambda self, *a, **k: calls.append("registered"))
    monkeypatch.setattr("sm_magic.backends.local.backend.LocalBackend.submit", lambda *a, **k: calls.append("submitted"))
    with pytest.raises(MetricsError, match=r"metric 'loss': the regex 'loss=\(\[0-9\.' does not compile"):
        sm_magic.launch(EPOCHS_SCRIPT, metrics=[MetricDefinition("loss", "loss=([0-9.")])
    with pytest.raises(UsageError, match=r"metric 'loss': the regex 'loss=\(\[0-9\.' does not compile"):
        ip.run_cell_magic("sagemaker_train", "--metric 'loss=loss=([0-9.'", EPOCHS_SCRIPT)
    with pytest.raises(api.LaunchError, match="give a NAME=REGEX string or a MetricDefinition"):
        sm_magic.launch(EPOCHS_SCRIPT, metrics=[("loss", "loss=([0-9.]+)")])
    assert calls == []
    _nothing_started(sm_env)


def test_the_forms_launch_button_plans_the_cells_request(ip, sm_env, monkeypatch):
    """--edit: the Launch button launches the line's request with the edited config, through
    api.plan: a refusal shows in the form, and nothing is started."""
    shown = []
    monkeypatch.setattr("sm_magic.magic.follow.display", shown.append)
    planned = []
    plan = api.plan
    monkeypatch.setattr(api, "plan", lambda request, **k: planned.append(request) or plan(request, **k))
    ip.run_cell_magic("sagemaker_train", "--edit --name edited-1 --instance-type ml.m5.large "
                      "--simulate-interruption 5 -- --epochs 1", EPOCHS_SCRIPT)
    [box] = shown
    form = box._form
    assert form.controls["ec2_instance_type"].value == "ml.m5.large"  # the line's flag, in the form
    form.controls["mixed_precision"].value = "fp16"
    form.launch()
    assert "Not launched: --simulate-interruption works on the local backend only, not sagemaker" in form.message.value
    [request] = planned
    assert request.job.name == "edited-1" and request.job.simulate_interruptions == (5.0,)
    assert request.args == ["--epochs", "1"]
    edited = request.config.given
    assert (edited.ec2_instance_type, edited.mixed_precision) == ("ml.m5.large", "fp16")
    _nothing_started(sm_env)


def test_python_keywords_make_the_same_request_as_the_line(sm_env):
    line, _ = train_line.parse("--name same-1 --backend local --input a=s3://b/a --metric 'l=l=([0-9]+)' "
                               "--instance-count 1 -- --x 1", EPOCHS_SCRIPT, NotebookContext())
    keywords = LaunchRequest.from_keywords(EPOCHS_SCRIPT, None, ["--x", "1"], name="same-1", backend="local",
                                           inputs=["a=s3://b/a"], metrics=["l=l=([0-9]+)"], instance_count=1)
    assert keywords == line
    # Every keyword that is not the request's own is a config field, checked as the config is.
    with pytest.raises(sm_magic.ConfigError, match="unknown key `instance_typ`; did you mean `ec2_instance_type`"):
        sm_magic.launch(EPOCHS_SCRIPT, instance_typ="ml.m5.large")
    _nothing_started(sm_env)
