"""The training image a SageMaker job gets, chosen offline from the installed SDK's image tables, and
the requirements checked against it before anything is uploaded."""

from __future__ import annotations

import pytest

from sm_magic.config.model import TrainConfig
from sm_magic.software import requirements as reqs
from sm_magic.software.images import (
    ACCELERATE_DEFAULTS,
    ImageError,
    choose,
    cuda_runs_on,
    hugging_face_images,
    instance_gpus,
    pytorch_images,
)

from helpers.releases import ACCELERATE_1_16, installed, notebook_accelerate

ECR = "763104351884.dkr.ecr.us-east-1.amazonaws.com"
QUICKSTART_IMPORTS = ["import argparse, os\nimport torch\nfrom torch import nn\nfrom accelerate import Accelerator\n"]


def quickstart_requirements(image):
    """What the plan makes for this image: the quickstart cell's requirements, with the
    accelerate that installs there."""
    return reqs.for_job(QUICKSTART_IMPORTS, image.provides, launcher=reqs.job_launcher(image.python, image.versions))


def quickstart_check(image):
    """What the plan checks: the quickstart cell's requirements, made for this image."""
    return reqs.image_problems(quickstart_requirements(image), image.python, image.versions)


def chosen(**fields):
    return choose(TrainConfig(**fields), quickstart_check)


def test_a_gpu_instance_gets_the_newest_hugging_face_image():
    image = chosen(ec2_instance_type="ml.g5.xlarge")
    assert image.uri == f"{ECR}/huggingface-pytorch-training:2.9.0-transformers5.3.0-gpu-py312-cu130-ubuntu22.04"
    assert image.python == (3, 12) and image.pytorch == "2.9.0" and image.cuda == (13, 0)
    assert "newest Hugging Face PyTorch training image for ml.g5.xlarge (NVIDIA A10G)" in image.reason


def test_a_volta_instance_gets_the_newest_image_whose_cuda_still_runs_on_it():
    image = chosen(ec2_instance_type="ml.p3.2xlarge")
    assert image.uri == f"{ECR}/huggingface-pytorch-training:2.8.0-transformers4.56.2-gpu-py312-cu129-ubuntu22.04"
    assert "CUDA 13.0 does not run on the NVIDIA V100 (Volta)" in image.reason


def test_a_cpu_instance_gets_the_pytorch_cpu_image():
    image = chosen(ec2_instance_type="ml.m5.xlarge")
    assert image.uri == f"{ECR}/pytorch-training:2.10.0-cpu-py313"
    assert "no GPU; the Hugging Face images are GPU-only" in image.reason
    assert "transformers" not in image.provides  # so a cell importing it gets it pinned, not assumed


def test_cuda_support_by_architecture():
    assert cuda_runs_on((12, 9), 70) and not cuda_runs_on((13, 0), 70)      # Volta
    assert cuda_runs_on((13, 0), 75) and cuda_runs_on((13, 0), 90)          # Turing, Hopper
    assert not cuda_runs_on((12, 1), 100) and cuda_runs_on((12, 8), 100)    # Blackwell needs 12.8
    assert not cuda_runs_on((12, 1), 37) and cuda_runs_on((11, 8), 37)      # Kepler left with CUDA 12


def test_explicit_versions_win():
    image = chosen(ec2_instance_type="ml.g5.xlarge", pytorch_version="2.5.1")
    assert image.uri.endswith("huggingface-pytorch-training:2.5.1-transformers4.49.0-gpu-py311-cu124-ubuntu22.04")
    assert "with pytorch_version 2.5.1 (from the config)" in image.reason
    cpu = chosen(ec2_instance_type="ml.m5.xlarge", pytorch_version="2.9", py_version="py312")
    assert cpu.uri.endswith("pytorch-training:2.9.0-cpu-py312")
    own = chosen(ec2_instance_type="ml.g5.xlarge", image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:v2-py311")
    assert own.uri.endswith("/mine:v2-py311") and own.python == (3, 11)
    assert own.reason == "image_uri from the config (Python 3.11, from its tag)"


def test_accelerate_config_defaults_are_a_preference_that_gives_way(monkeypatch):
    """`accelerate config` writes PyTorch 1.10.2 / transformers 4.17.0 / py38 into every SageMaker config;
    that image holds only where the notebook's own accelerate installs there, else the newest image
    is chosen (not a years-older accelerate), and the reason says why."""
    image = chosen(ec2_instance_type="ml.p3.16xlarge", **ACCELERATE_DEFAULTS)
    assert image.python == (3, 12) and image.cuda == (12, 9)
    assert "the ones `accelerate config` always writes" in image.reason
    mine = installed()
    needs = reqs.job_launcher((3, 8), {"torch": "1.10.2"}).needs  # from the installed metadata
    assert needs.startswith("needs Python >= ") and mine.requires_python.lstrip(">=").removesuffix(".0") in needs
    assert f"that image does not fit (the notebook's accelerate {mine.version} {needs})" in image.reason

    notebook_accelerate(monkeypatch, ACCELERATE_1_16)
    image = chosen(ec2_instance_type="ml.p3.16xlarge", **ACCELERATE_DEFAULTS)
    assert image.python == (3, 12)
    assert ("that image does not fit (the notebook's accelerate 1.16.0 needs Python >= 3.11 and torch >= 2.6.0, "
            "the image has Python 3.8 and torch 1.10.2)") in image.reason
    notebook_accelerate(monkeypatch, "1.0.1")  # a notebook whose accelerate installs there gets that image
    image = chosen(ec2_instance_type="ml.p3.16xlarge", **ACCELERATE_DEFAULTS)
    assert image.uri.endswith("huggingface-pytorch-training:1.10.2-transformers4.17.0-gpu-py38-cu113-ubuntu20.04")
    assert "always writes" not in image.reason


def test_the_notebooks_accelerate_is_kept_where_it_installs(monkeypatch):
    image = chosen(ec2_instance_type="ml.g5.xlarge")
    job = quickstart_requirements(image)
    assert job.lines[0] == f"accelerate=={installed().version}" and job.launcher.kept and job.launcher.note == ""
    assert not any(line.startswith("# accelerate") for line in job.lines)
    notebook_accelerate(monkeypatch, ACCELERATE_1_16)
    job = quickstart_requirements(chosen(ec2_instance_type="ml.g5.xlarge"))  # Python 3.12, torch 2.9.0
    assert job.lines[0] == "accelerate==1.16.0" and job.launcher.kept


def test_an_image_whose_python_is_too_old_gets_the_newest_accelerate_that_installs(monkeypatch):
    """The image the config asks for is the one used; the job's accelerate is the newest release
    of the notebook's major version that installs there, and the requirements say so."""
    notebook_accelerate(monkeypatch, ACCELERATE_1_16)
    image = chosen(ec2_instance_type="ml.p4d.24xlarge", pytorch_version="2.1.0", transformers_version="4.36.0",
                   py_version="py310")
    assert image.uri.endswith("huggingface-pytorch-training:2.1.0-transformers4.36.0-gpu-py310-cu121-ubuntu20.04")
    job = quickstart_requirements(image)
    note = ("accelerate 1.15.0 in the job: the notebook's 1.16.0 needs Python >= 3.11 and torch >= 2.6.0, "
            "the image has Python 3.10 and torch 2.1.0")
    assert job.launcher.version == "1.15.0" and job.launcher.note == note
    assert job.lines[0] == "accelerate==1.15.0" and job.lines[-1] == f"# {note}"
    assert reqs.image_problems(job, image.python, image.versions) == []
    # Python alone: an image_uri whose tag says py310, with a torch new enough.
    own = chosen(ec2_instance_type="ml.g5.xlarge", image_uri=f"{ECR}/pytorch-training:2.9.0-gpu-py310-cu130-ubuntu22.04")
    assert own.python == (3, 10) and own.pytorch == "2.9.0"
    assert quickstart_requirements(own).launcher.note == ("accelerate 1.15.0 in the job: the notebook's 1.16.0 needs "
                                                          "Python >= 3.11, the image has 3.10")
    # Older images get older releases, down to what each one's Python and torch allow.
    assert reqs.job_launcher((3, 9), {"torch": "1.13.1"}).version == "1.2.1"
    assert reqs.job_launcher((3, 8), {"torch": "1.10.2"}).version == "1.0.1"


def test_an_image_whose_torch_is_too_old_gets_the_newest_accelerate_that_installs(monkeypatch):
    notebook_accelerate(monkeypatch, ACCELERATE_1_16)
    image = chosen(ec2_instance_type="ml.g5.xlarge", pytorch_version="2.5.1")  # Python 3.11
    assert image.uri.endswith("huggingface-pytorch-training:2.5.1-transformers4.49.0-gpu-py311-cu124-ubuntu22.04")
    job = quickstart_requirements(image)
    assert job.lines[0] == "accelerate==1.15.0"
    assert job.launcher.note == "accelerate 1.15.0 in the job: the notebook's 1.16.0 needs torch >= 2.6.0, the image has 2.5.1"
    # A release newer than the table, read from its installed metadata, falls back the same way.
    notebook_accelerate(monkeypatch, reqs.Release("1.17.0", ">=3.11.0", ">=2.7.0"))
    assert reqs.job_launcher((3, 12), {"torch": "2.6.0"}).version == "1.16.0"
    assert reqs.job_launcher((3, 12), {"torch": "2.7.1"}).kept


def test_an_image_no_accelerate_release_installs_in_is_a_clear_error(monkeypatch):
    with pytest.raises(ImageError) as e:
        chosen(ec2_instance_type="ml.g5.xlarge", pytorch_version="1.9.0")
    message = str(e.value)
    assert "no SageMaker training image with pytorch_version 1.9.0 can run this job on ml.g5.xlarge" in message
    assert ("huggingface-pytorch-training:1.9.0-transformers4.11.0-gpu-py38-cu111-ubuntu20.04 (and 2 more): "
            "no accelerate 1.x installs there: even 1.0.0, the oldest, needs "
            "torch >= 1.10.0, the image has 1.9.0\n") in message
    assert "Remove the version settings" in message and "image_uri" in message
    notebook_accelerate(monkeypatch, ACCELERATE_1_16)
    with pytest.raises(ImageError) as e:
        chosen(ec2_instance_type="ml.g5.xlarge", image_uri=f"{ECR}/old:1.0-py37")
    assert str(e.value).startswith(
        f"the requirements cannot be installed in image_uri {ECR}/old:1.0-py37: no accelerate 1.x installs there: "
        "even 1.0.0, the oldest, needs Python >= 3.8, the image has 3.7. Use an image")
    # A notebook on a major version sm_magic knows no older release of has nothing to fall back to.
    notebook_accelerate(monkeypatch, reqs.Release("2.0.0", ">=3.12"))
    assert reqs.job_launcher((3, 11)).problem == ("accelerate 2.0.0 (the notebook's) needs Python >= 3.12, the image "
                                                  "has 3.11, and sm_magic knows no older 2.x release")


def test_a_pin_needing_a_newer_torch_than_the_image_has_is_named():
    """A pinned accelerate (a user's own requirements file) is checked from sm_magic's table of
    releases, whichever version the notebook has."""
    assert reqs.problems(["accelerate==1.15.0"], (3, 10), {"torch": "1.13.1"}) == [
        "accelerate==1.15.0 requires torch>=2.0.0 (the image has torch 1.13.1)"]
    assert reqs.problems(["accelerate==1.16.0"], (3, 10), {"torch": "2.9.0"}) == [
        "accelerate==1.16.0 requires Python >=3.11.0 (the image has Python 3.10)"]
    assert reqs.problems(["accelerate==1.15.0"], (3, 10), {"torch": "2.1.0"}) == []
    lines = reqs.generate(QUICKSTART_IMPORTS, reqs.HF_IMAGE_PROVIDES)
    assert reqs.problems(lines, (3, 12), {"torch": "2.9.0"}) == []


def test_instances_without_an_image():
    with pytest.raises(ImageError, match=r"no GPU and the Hugging Face training images are GPU-only.*remove "
                                         r"transformers_version"):
        chosen(ec2_instance_type="ml.m5.xlarge", transformers_version="4.49.0")
    with pytest.raises(ImageError, match=r"Inferentia/Trainium instance.*set image_uri"):
        chosen(ec2_instance_type="ml.trn1.2xlarge")
    with pytest.raises(ImageError) as e:
        chosen(ec2_instance_type="ml.p2.xlarge", pytorch_version="1.9")  # K80, and no accelerate 1.x for torch 1.9
    lines = str(e.value).splitlines()
    assert lines[0] == "no SageMaker training image with pytorch_version 1.9 can run this job on ml.p2.xlarge:"
    assert "even 1.0.0, the oldest, needs torch >= 1.10.0" in lines[1] and len(lines) < 8


def test_a_k80_instance_gets_the_newest_image_that_runs_on_it_with_an_accelerate_that_installs():
    image = chosen(ec2_instance_type="ml.p2.xlarge")
    assert image.uri.endswith("huggingface-pytorch-training:1.10.2-transformers4.17.0-gpu-py38-cu113-ubuntu20.04")
    assert ("PyTorch 1.13 and later images do not support the NVIDIA K80 (ml.p2, deprecated by SageMaker)"
            in image.reason)
    assert quickstart_requirements(image).launcher.version == "1.0.1"


def test_image_uris_are_the_sdks_own():
    from sagemaker.core import image_uris

    for region in ("us-east-1", "eu-central-1", "cn-north-1"):
        for image in hugging_face_images(region)[:6]:
            assert image.uri == image_uris.retrieve(
                framework="huggingface", version=image.transformers, base_framework_version=f"pytorch{image.pytorch}",
                py_version=f"py{image.python[0]}{image.python[1]}", instance_type="ml.g5.xlarge",
                image_scope="training", region=region)
        for image in pytorch_images(region, "cpu")[:6]:
            assert image.uri == image_uris.retrieve(
                framework="pytorch", version=image.pytorch, py_version=f"py{image.python[0]}{image.python[1]}",
                instance_type="ml.m5.xlarge", image_scope="training", region=region)


def test_gpu_counts():
    assert [instance_gpus(t) for t in ("ml.m5.xlarge", "ml.g5.xlarge", "ml.g5.12xlarge", "ml.p3.2xlarge",
                                       "ml.p3.16xlarge", "ml.p4d.24xlarge")] == [0, 1, 4, 1, 8, 8]
