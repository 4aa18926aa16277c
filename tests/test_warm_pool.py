"""Warm pools (`--keep-alive MINUTES`, the config's keep_alive_period_in_seconds): the flag and
the field, checked against the API's bounds before anything is written; refused (or said) on
backends that have none; and the entry command's install into the warm pool's cache, reused when
the requirements are the same, never when an install was cut short or failed.

The whole path in the emulated training container (two runs on one warm host, a changed
requirement) is tests/test_container_contract.py; the job's WarmPoolStatus,
tests/test_sagemaker_backend.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from sm_magic.config.model import MAX_KEEP_ALIVE_SECONDS, TrainConfig
from sm_magic.config.resolve import resolve_config
from sm_magic.container.entry import (
    COMPLETE,
    REQUIREMENTS_ENV,
    WARM_CACHE_ENV,
    WARM_DIR,
    InstallFailed,
    install_requirements,
)
from sm_magic.errors import UsageProblem
from sm_magic.plan.checks import LaunchError
from sm_magic.plan.planner import plan
from sm_magic.plan.request import LaunchRequest
from sm_magic.plan.train_line import LineError, parse


def test_the_bound_is_the_apis_own():
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    bounds = model.shape_for("ResourceConfig").members["KeepAlivePeriodInSeconds"].metadata
    assert (bounds["min"], bounds["max"]) == (0, MAX_KEEP_ALIVE_SECONDS)


def test_the_flag_takes_minutes_and_the_config_keeps_seconds():
    request, _ = parse("--keep-alive 10 --instance-type ml.g5.xlarge -- --epochs 1", "print(1)")
    assert request.config.overrides == {"instance_type": "ml.g5.xlarge", "keep_alive_period_in_seconds": 600}
    assert request.args == ["--epochs", "1"]
    assert resolve_config(overrides=request.config.overrides,
                          use_accelerate_default=False).keep_alive_period_in_seconds == 600
    keywords = LaunchRequest.from_keywords("print(1)", keep_alive=1.5)
    assert keywords.config.overrides == {"keep_alive_period_in_seconds": 90}


@pytest.mark.parametrize("minutes", ["361", "-1", "ten", "nan"])
def test_a_keep_alive_the_api_refuses_is_one_line_naming_the_flag(minutes):
    with pytest.raises(LineError) as e:
        parse(f"--keep-alive {minutes}", "print(1)")
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"%%sagemaker_train: --keep-alive {minutes}: ")
    assert "from 0 to 360" in message


def test_the_config_field_lifts_from_additional_args_and_checks_the_bound(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("ec2_instance_type: ml.g5.xlarge\nadditional_args:\n  keep_alive_period_in_seconds: 1800\n")
    config = TrainConfig.from_yaml(path)
    assert config.keep_alive_period_in_seconds == 1800 and config.additional_args == {}
    assert "keep_alive_period_in_seconds: 1800" in config.to_yaml().split("additional_args:")[1]
    path.write_text("additional_args:\n  keep_alive_period_in_seconds: 21601\n")
    with pytest.raises(UsageProblem) as e:
        TrainConfig.from_yaml(path)
    assert "keep_alive_period_in_seconds" in str(e.value) and "at most 21600 s" in str(e.value)
    assert "\n" not in str(e.value)


def test_another_backend_refuses_the_flag_and_says_when_a_config_file_asks(sm_env, capsys):
    with pytest.raises(LaunchError, match=r"--keep-alive asks SageMaker for a warm pool; the local backend has "
                                          r"none: remove --keep-alive, or run with --backend sagemaker"):
        plan(LaunchRequest.from_keywords("print(1)", backend="local", keep_alive=5))
    config = TrainConfig(keep_alive_period_in_seconds=300)
    plan(LaunchRequest.from_keywords("print(1)", config, backend="local")).close()
    assert ("keep_alive_period_in_seconds 300 (a SageMaker warm pool) does not apply to the local backend"
            in capsys.readouterr().out)


# -- the entry command's install into the warm pool's cache ---------------------------------------

def _bundle(tmp_path, requirements: str):
    bundle = tmp_path / "code"
    bundle.mkdir(exist_ok=True)
    (bundle / "requirements.txt").write_text(requirements)
    cache = tmp_path / "warmpoolcache"
    cache.mkdir(exist_ok=True)
    return bundle, {REQUIREMENTS_ENV: "requirements.txt", WARM_CACHE_ENV: str(cache), "TRAINING_JOB_NAME": "job-1"}


# `pip` is in the image (this venv) already: pip runs and installs nothing, with no index.
SATISFIED = "--no-index\npip\n"


@pytest.mark.jobs
def test_the_same_requirements_reuse_the_cached_environment(tmp_path, capfd):
    bundle, env = _bundle(tmp_path, SATISFIED)
    python = install_requirements(env, bundle_dir=str(bundle))
    assert "no environment for these requirements" in capfd.readouterr().out
    # The image's own packages stay visible behind the environment (torch is the image's).
    seen = subprocess.run([python, "-c", "import torch, sys; print(sys.prefix)"], capture_output=True, text=True)
    assert seen.returncode == 0 and seen.stdout.strip() != sys.prefix, seen.stderr
    again = install_requirements({**env, "TRAINING_JOB_NAME": "job-2"}, bundle_dir=str(bundle))
    assert again == python
    out = capfd.readouterr().out
    assert "requirements unchanged" in out and "installed by job job-1): reused, nothing installed" in out
    assert "pip install" not in out


@pytest.mark.jobs
def test_a_half_finished_or_failed_install_is_never_reused(tmp_path, capfd):
    bundle, env = _bundle(tmp_path, SATISFIED)
    python = install_requirements(env, bundle_dir=str(bundle))
    target = tmp_path / "warmpoolcache" / WARM_DIR / python.split("/")[-3]
    (target / COMPLETE).unlink()  # as if the job had been killed before the install ended
    (target / "left-over").write_text("x")
    capfd.readouterr()
    assert install_requirements(env, bundle_dir=str(bundle)) == python
    assert "no environment for these requirements" in capfd.readouterr().out
    assert not (target / "left-over").exists() and (target / COMPLETE).is_file()

    # A requirement pip cannot have: the install fails, and the next job tries again.
    bundle, env = _bundle(tmp_path, "--no-index\nno-such-package-sm-magic==1.0\n")
    for _ in range(2):
        with pytest.raises(InstallFailed, match="installing the job's requirements failed"):
            install_requirements(env, bundle_dir=str(bundle))
        assert "no environment for these requirements" in capfd.readouterr().out
    complete = sorted(p.parent.name for p in (tmp_path / "warmpoolcache" / WARM_DIR).glob(f"*/{COMPLETE}"))
    assert complete == [target.name]
