"""The SageMaker SDK names sm_magic relies on that are not the SDK's public API.

`sagemaker>=3.27,<4` is pinned by major version; a minor release that moves one of these fails
here, not in a user's launch.
"""

import inspect
import json
import warnings
from importlib import metadata

import pytest


@pytest.fixture(scope="module")
def sdk():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from sagemaker.core.helper.session_helper import Session
        from sagemaker.train.model_trainer import ModelTrainer
    return Session, ModelTrainer


def test_the_trainer_builds_the_create_request_without_sending_it(sdk):
    # sagemaker_submit.submit: ModelTrainer._create_training_job_args() uploads the code channels and
    # returns CreateTrainingJob's arguments; the job is then created under sm_magic's own name.
    _, ModelTrainer = sdk
    build = getattr(ModelTrainer, "_create_training_job_args", None)
    assert callable(build), "ModelTrainer._create_training_job_args is gone"
    params = [p for p in inspect.signature(build).parameters.values() if p.name != "self"]
    assert all(p.default is not inspect.Parameter.empty for p in params), params


def test_the_session_keeps_its_default_bucket_where_the_bundle_session_reads_it(sdk):
    # sdk_recorder.session_class's BundleSession: default_bucket() returns _default_bucket_name_override
    # (set from Session(default_bucket=...)); upload_data is overridden for dry runs.
    Session, _ = sdk
    assert "default_bucket" in inspect.signature(Session.__init__).parameters
    assert "self._default_bucket_name_override = default_bucket" in inspect.getsource(Session.__init__)
    upload = inspect.signature(Session.upload_data).parameters
    assert list(upload)[:6] == ["self", "path", "bucket", "key_prefix", "callback", "extra_args"]
    assert callable(getattr(Session, "determine_bucket_and_prefix", None))


@pytest.mark.parametrize("framework", ["huggingface", "pytorch"])
def test_the_image_tables_are_where_images_reads_them(framework):
    # backends/images.py reads these JSON tables as data (importing their module takes seconds).
    path = metadata.distribution("sagemaker-core").locate_file(f"sagemaker/core/image_uri_config/{framework}.json")
    table = json.loads(path.read_text(encoding="utf-8"))
    assert table["training"]["versions"], f"{path} has no training versions"


def test_the_driver_installs_requirements_only_when_given_some():
    # sagemaker_request.build_trainer gives SourceCode no requirements for a warm-pool job, whose
    # entry command installs them into the pool's cache: the SDK's sm_train.sh must then install none.
    from sagemaker.train import templates
    from sagemaker.train.model_trainer import ModelTrainer

    assert "{install_requirements}" in templates.TRAIN_SCRIPT_TEMPLATE
    assert "install_requirements.py" not in templates.TRAIN_SCRIPT_TEMPLATE.replace("{install_requirements}", "")
    source = inspect.getsource(ModelTrainer._prepare_train_script)
    assert 'install_requirements = ""' in source and "if source_code.requirements:" in source
