"""What a job's container installs: the requirements policy, a user's own requirements file, and the
refusals, through the magic and the Python API as a user would meet them."""

from __future__ import annotations

import importlib.metadata as md

import pytest
from IPython.core.error import UsageError

import sm_magic
from sm_magic import requirements as reqs
from sm_magic.api import LaunchError, dry_run

from helpers.jobscripts import EPOCHS_SCRIPT


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
    assert sm_magic.api.Registry().list() == [] and not any((sm_env / "sm_jobs").glob("*"))


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
    assert f"accelerate=={md.version('accelerate')} requires Python >=3.10" in str(e.value)
    assert "team-image:3-py39" in str(e.value) and "(the image has Python 3.9)" in str(e.value)
