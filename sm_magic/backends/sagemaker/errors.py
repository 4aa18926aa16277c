"""What AWS says when a submit fails, as a BackendError that names what to fix.

botocore raises NoCredentialsError, EndpointConnectionError, ParamValidationError or a ClientError
carrying the service's code and message; these turn each into one sentence a user can act on.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from typing import TYPE_CHECKING

from ..base import BackendError

if TYPE_CHECKING:
    from ...config.model import TrainConfig

CREDENTIALS_FIX = ("Configure credentials the usual boto3 way: `aws configure` or `aws sso login`, "
                   "AWS_PROFILE or `profile` in the config, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                   "in the environment (sm_magic never stores them)")


def error_code(e) -> tuple[str, str]:
    """(code, message) of a botocore ClientError; the message falls back to the exception's text."""
    err = getattr(e, "response", {}).get("Error", {})
    return str(err.get("Code", "")), str(err.get("Message", "")) or str(e)


def aws_failure(what: str, e: Exception, fix: str = "") -> BackendError:
    """`what` failed because of `e`: missing credentials, an unreachable endpoint, a refusal."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(e, NoCredentialsError):
        return BackendError(f"{what}: no AWS credentials found. {CREDENTIALS_FIX}")
    if isinstance(e, EndpointConnectionError):
        return BackendError(f"{what}: cannot reach {getattr(e, 'kwargs', {}).get('endpoint_url', 'AWS')}; check "
                            "the network, or AWS_ENDPOINT_URL if you set one")
    if isinstance(e, ClientError):
        code, message = error_code(e)
        return BackendError(f"{what}: {code}: {message}" + (f". {fix}" if fix else ""))
    return BackendError(f"{what}: {type(e).__name__}: {e}" + (f". {fix}" if fix else ""))


def create_failure(name: str, e: Exception, config: TrainConfig) -> BackendError:
    """Why CreateTrainingJob refused job `name`, with the fix for the refusals users meet most."""
    from botocore.exceptions import ClientError, ParamValidationError

    if isinstance(e, ParamValidationError):
        return BackendError(f"the training job request for {name} is not valid: {e}")
    if not isinstance(e, ClientError):
        return aws_failure(f"cannot create training job {name}", e)
    code, message = error_code(e)
    fix = ""
    if "instancetype" in message.replace(" ", "").lower() or "instance type" in message.lower():
        fix = f"check ec2_instance_type ({config.ec2_instance_type})"
        close = difflib.get_close_matches(config.ec2_instance_type, _known_instance_types(), n=1, cutoff=0.8)
        if close and close[0] != config.ec2_instance_type:
            fix += f"; did you mean {close[0]}?"
    elif code == "ResourceLimitExceeded":
        fix = ("an account quota is too low for this request: ask for an increase in Service Quotas "
               "(SageMaker, '<instance type> for training job usage'), or use another instance type or count")
    elif code in ("AccessDenied", "AccessDeniedException"):
        fix = "your identity needs sagemaker:CreateTrainingJob and iam:PassRole on the job's role"
    elif code == "ResourceInUse":
        fix = "choose another --name"
    return BackendError(f"SageMaker refused training job {name}: {code}: {message}" + (f". Fix: {fix}" if fix else ""))


@lru_cache(maxsize=1)
def _known_instance_types() -> list[str]:
    try:
        import botocore.session

        model = botocore.session.get_session().get_service_model("sagemaker")
        return list(model.shape_for("TrainingInstanceType").enum)
    except Exception:
        return []
