"""The training image a SageMaker job gets, chosen offline from the installed SDK's image tables, and
the requirements checked against it before anything is uploaded."""

from __future__ import annotations

import pytest

from sm_magic import requirements as reqs
from sm_magic.backends.images import (ImageError, choose, cuda_runs_on, hugging_face_images, instance_gpus,
                                      pytorch_images)
from sm_magic.config import TrainConfig

ECR = "763104351884.dkr.ecr.us-east-1.amazonaws.com"
QUICKSTART_IMPORTS = ["import argparse, os\nimport torch\nfrom torch import nn\nfrom accelerate import Accelerator\n"]


def quickstart_check(image):
    """What the plan checks: the quickstart cell's requirements, made for this image."""
    return reqs.problems(reqs.generate(QUICKSTART_IMPORTS, image.provides), image.python, image.versions)


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


def test_accelerate_config_defaults_are_a_preference_that_gives_way():
    """`accelerate config` writes PyTorch 1.10.2 / transformers 4.17.0 / py38 into every SageMaker config;
    a py38 image cannot install today's accelerate, so the newest one that can is chosen, and the
    reason says why."""
    image = chosen(ec2_instance_type="ml.p3.16xlarge", pytorch_version="1.10.2", transformers_version="4.17.0",
                   py_version="py38")
    assert image.python == (3, 12) and image.cuda == (12, 9)
    assert "the ones `accelerate config` always writes" in image.reason
    assert "accelerate==" in image.reason and "requires Python >=3.10" in image.reason


def test_an_image_whose_python_cannot_install_a_pin_is_a_clear_error():
    with pytest.raises(ImageError) as e:
        chosen(ec2_instance_type="ml.g5.xlarge", pytorch_version="1.13.1")
    message = str(e.value)
    assert "no SageMaker training image with pytorch_version 1.13.1 can run this job on ml.g5.xlarge" in message
    assert ("huggingface-pytorch-training:1.13.1-transformers4.26.0-gpu-py39-cu117-ubuntu20.04 (and 1 more): "
            "accelerate==" in message) and "requires Python >=3.10" in message and "(the image has Python 3.9)" in message
    assert "Remove the version settings" in message and "image_uri" in message
    with pytest.raises(ImageError, match=r"the requirements cannot be installed in image_uri .*/old:1\.0-py38: "
                                         r"accelerate==\S+ requires Python >=3\.10"):
        chosen(ec2_instance_type="ml.g5.xlarge", image_uri=f"{ECR}/old:1.0-py38")


def test_a_pin_needing_a_newer_torch_than_the_image_has_is_named():
    lines = reqs.generate(QUICKSTART_IMPORTS, reqs.HF_IMAGE_PROVIDES)
    found = reqs.problems(lines, (3, 10), {"torch": "1.13.1"})
    assert any(f.startswith("accelerate==") and "requires torch>=2.0.0 (the image has torch 1.13.1)" in f
               for f in found)
    assert reqs.problems(lines, (3, 12), {"torch": "2.9.0"}) == []


def test_instances_without_an_image():
    with pytest.raises(ImageError, match=r"no GPU and the Hugging Face training images are GPU-only.*remove "
                                         r"transformers_version"):
        chosen(ec2_instance_type="ml.m5.xlarge", transformers_version="4.49.0")
    with pytest.raises(ImageError, match=r"Inferentia/Trainium instance.*set image_uri"):
        chosen(ec2_instance_type="ml.trn1.2xlarge")
    with pytest.raises(ImageError) as e:
        chosen(ec2_instance_type="ml.p2.xlarge")  # K80: no image that runs on it installs accelerate 1.x
    lines = str(e.value).splitlines()
    assert lines[0] == "no SageMaker training image can run this job on ml.p2.xlarge:"
    assert lines[1].endswith("more): PyTorch 1.13 and later images do not support the NVIDIA K80 (ml.p2, "
                             "deprecated by SageMaker)")
    assert "requires Python >=3.10" in lines[2] and len(lines) < 8


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
