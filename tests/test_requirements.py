"""What a job's container installs: the requirements policy, a user's own requirements file, and the
refusals, through the magic and the Python API as a user would meet them."""

from __future__ import annotations

import importlib.metadata as md

import pytest
from IPython.core.error import UsageError

import sm_magic
from sm_magic.plan.planner import LaunchError, dry_run
from sm_magic.software import requirements as reqs
from sm_magic.software.images import ImageError

from helpers.jobscripts import EPOCHS_SCRIPT
from helpers.releases import ACCELERATE_1_16, notebook_accelerate


def test_the_image_keeps_its_own_stack_and_everything_else_is_pinned():
    imports = ["import numpy, pandas, yaml, huggingface_hub, torch\nimport not_installed_here\n"]
    hf = reqs.generate(imports, reqs.HF_IMAGE_PROVIDES)
    assert hf[0] == f"accelerate=={md.version('accelerate')}"  # the launcher, always pinned
    assert f"PyYAML=={md.version('PyYAML')}" in hf
    # What the image provides is named without a version: its own build stays.
    assert {"numpy", "pandas", "huggingface-hub", "torch"} <= set(hf)
    assert not any(line.startswith(("numpy=", "pandas=", "torch=")) for line in hf)
    assert "# imported but not installed here, so not listed: not_installed_here" in hf
    # A PyTorch image has no Hugging Face stack: there it is pinned to the notebook's version.
    pt = reqs.generate(imports, reqs.PYTORCH_IMAGE_PROVIDES)
    assert f"huggingface_hub=={md.version('huggingface_hub')}" in pt and "numpy" in pt


@pytest.mark.parametrize("cell", ["from torch.utils.tensorboard import SummaryWriter\n",
                                  "import torch.utils.tensorboard as tb\n",
                                  "from torch.utils import tensorboard\n"])
def test_a_summary_writer_brings_tensorboard_which_torch_does_not_require(cell):
    lines = reqs.generate([cell], reqs.PYTORCH_IMAGE_PROVIDES)
    assert f"tensorboard=={md.version('tensorboard')}" in lines and "torch" in lines
    assert not any(line.startswith("tensorboard") for line in reqs.generate(["import torch.utils.data\n"],
                                                                             reqs.PYTORCH_IMAGE_PROVIDES))


@pytest.mark.jobs
def test_a_users_requirements_file_replaces_the_generated_one(ip, sm_env, capsys):
    mine = sm_env / "mine.txt"
    mine.write_text("# my pins\nPyYAML==6.0.1\n")
    job = ip.run_cell_magic("sagemaker_train", f"--wait --requirements {mine}", "import yaml\n" + EPOCHS_SCRIPT)
    lines = (sm_env / "sm_jobs" / job.name / "bundle" / "requirements.txt").read_text().splitlines()
    assert lines[:2] == ["# my pins", "PyYAML==6.0.1"]  # as written
    assert lines[-1] == f"accelerate=={md.version('accelerate')}"  # the entry command runs it
    ip.run_cell_magic("sagemaker_train", f"--dry-run --requirements {mine.name}", "import yaml\nprint(1)\n")
    assert f"requirements.txt ({mine}):" in capsys.readouterr().out


def test_a_requirements_txt_beside_the_notebook_is_used(ip, sm_env, capsys):
    (sm_env / "requirements.txt").write_text("scikit-learn==1.5.2\naccelerate>=1.0\n")
    ip.run_cell_magic("sagemaker_train", "--dry-run", "import yaml\nprint(1)\n")
    out = capsys.readouterr().out
    assert f"requirements.txt ({sm_env / 'requirements.txt'}):" in out
    assert "  scikit-learn==1.5.2\n  accelerate>=1.0\n" in out and "PyYAML" not in out


def test_bad_requirements_files_are_refused_before_anything_is_written(ip, sm_env):
    with pytest.raises(UsageError, match=r"requirements file /\S+/nope.txt: no such file"):
        ip.run_cell_magic("sagemaker_train", "--requirements nope.txt", EPOCHS_SCRIPT)
    local = sm_env / "local.txt"
    local.write_text("numpy==2.0.0\n./mypkg\n")
    with pytest.raises(UsageError, match=r"local.txt, line 2: './mypkg' installs from a path on this machine"):
        ip.run_cell_magic("sagemaker_train", f"--requirements {local}", EPOCHS_SCRIPT)
    nested = sm_env / "nested.txt"
    nested.write_text("-r base.txt\n")
    with pytest.raises(LaunchError, match=r"refers to another file, which the bundle does not carry"):
        sm_magic.launch(EPOCHS_SCRIPT, requirements=nested)
    assert sm_magic.plan.planner.Registry().list() == [] and not any((sm_env / "sm_jobs").glob("*"))


@pytest.mark.jobs
def test_sagemaker_checks_a_users_pins_against_the_image(aws, sm_env):
    """A pin whose Requires-Python the image cannot meet is refused before anything is uploaded,
    naming the package, the image and the fix."""
    from helpers.aws_moto import ROLE_NAME

    mine = sm_env / "mine.txt"
    mine.write_text(f"accelerate=={md.version('accelerate')}\n")
    with pytest.raises(Exception) as e:
        dry_run(EPOCHS_SCRIPT, backend="sagemaker", instance_type="ml.g5.xlarge", iam_role_name=ROLE_NAME,
                image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/team-image:3-py39", requirements=mine)
    requires_python = md.metadata("accelerate")["Requires-Python"]  # the installed release's own
    assert f"accelerate=={md.version('accelerate')} requires Python {requires_python}" in str(e.value)
    assert "team-image:3-py39" in str(e.value) and "(the image has Python 3.9)" in str(e.value)


PY310_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.9.0-gpu-py310-cu130-ubuntu22.04"
PY310_NOTE = "accelerate 1.15.0 in the job: the notebook's 1.16.0 needs Python >= 3.11, the image has 3.10"


@pytest.mark.jobs
def test_the_dry_run_the_bundle_and_the_record_say_which_accelerate_the_job_gets(aws, sm_env, monkeypatch):
    """A notebook with accelerate 1.16 and an image with Python 3.10: the job runs in that image
    with accelerate 1.15.0, and every place the user looks says so."""
    from helpers.aws_moto import ROLE_NAME

    notebook_accelerate(monkeypatch, ACCELERATE_1_16)
    text = dry_run(EPOCHS_SCRIPT, backend="sagemaker", instance_type="ml.g5.xlarge", iam_role_name=ROLE_NAME,
                   image_uri=PY310_IMAGE)
    assert f"Image: {PY310_IMAGE}\n  chosen: image_uri from the config (Python 3.10, from its tag)\n  {PY310_NOTE}\n" in text
    assert "\n  accelerate==1.15.0\n" in text and f"\n  # {PY310_NOTE}\n" in text and "accelerate==1.16.0" not in text

    job = sm_magic.launch(EPOCHS_SCRIPT, backend="sagemaker", instance_type="ml.g5.xlarge", iam_role_name=ROLE_NAME,
                          image_uri=PY310_IMAGE)
    record = sm_magic.plan.planner.Registry().get(job.name)
    assert record.extra["accelerate"] == {"version": "1.15.0", "notebook": "1.16.0", "note": PY310_NOTE}
    request = aws.client("sagemaker").describe_training_job(TrainingJobName=job.name)
    assert request["AlgorithmSpecification"]["TrainingImage"] == PY310_IMAGE
    code = next(c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"] if c["ChannelName"] == "code")
    bucket, _, prefix = code.removeprefix("s3://").partition("/")
    written = aws.client("s3").get_object(Bucket=bucket, Key=f"{prefix}/requirements.txt")["Body"].read().decode()
    assert written.splitlines()[0] == "accelerate==1.15.0" and f"# {PY310_NOTE}" in written.splitlines()

    # Where the notebook's accelerate installs, it is the job's, and nothing more is said.
    text = dry_run(EPOCHS_SCRIPT, backend="sagemaker", instance_type="ml.g5.xlarge", iam_role_name=ROLE_NAME)
    assert "\n  accelerate==1.16.0\n" in text and "in the job:" not in text


@pytest.mark.jobs
def test_a_users_own_accelerate_pin_is_used_as_written_or_refused(aws, sm_env, monkeypatch):
    """A requirements file that pins accelerate gets no other release: one that does not install
    in the image is refused, naming the pin and the image. A file that names no accelerate gets
    the one sm_magic chooses for the image, as a generated file does."""
    from helpers.aws_moto import ROLE_NAME

    notebook_accelerate(monkeypatch, ACCELERATE_1_16)
    mine = sm_env / "mine.txt"
    mine.write_text("accelerate==1.16.0\n")
    with pytest.raises(ImageError) as e:
        dry_run(EPOCHS_SCRIPT, backend="sagemaker", instance_type="ml.g5.xlarge", iam_role_name=ROLE_NAME,
                image_uri=PY310_IMAGE, requirements=mine)
    assert str(e.value).startswith(f"the requirements cannot be installed in image_uri {PY310_IMAGE}: "
                                   "accelerate==1.16.0 requires Python >=3.11.0 (the image has Python 3.10)")
    with pytest.raises(ImageError, match=r"(?s)no SageMaker training image with pytorch_version 2\.5\.1 can run .*"
                                          r"accelerate==1\.16\.0 requires torch>=2\.6\.0 \(the image has torch 2\.5\.1\)"):
        dry_run(EPOCHS_SCRIPT, backend="sagemaker", instance_type="ml.g5.xlarge", iam_role_name=ROLE_NAME,
                pytorch_version="2.5.1", requirements=mine)
    assert sm_magic.plan.planner.Registry().list() == []

    mine.write_text("PyYAML==6.0.1\n")
    text = dry_run("import yaml\n" + EPOCHS_SCRIPT, backend="sagemaker", instance_type="ml.g5.xlarge",
                   iam_role_name=ROLE_NAME, image_uri=PY310_IMAGE, requirements=mine)
    assert (f"  PyYAML==6.0.1\n  {reqs.LAUNCHER_NOTE}\n  accelerate==1.15.0\n  # {PY310_NOTE}\n") in text
