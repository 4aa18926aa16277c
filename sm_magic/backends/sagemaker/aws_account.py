"""The AWS account a job is submitted to: session, caller, role, bucket, region.

What the SDK would otherwise look up on its own is looked up here, so that a user's environment
needs nothing beyond the usual boto3 credential chain: the account comes from STS
GetCallerIdentity on the boto3 client (which honours AWS_ENDPOINT_URL; the SDK's own lookup calls
a regional STS endpoint directly), the role name becomes an ARN through IAM GetRole, and the
default bucket `sagemaker-<region>-<account>` is checked (and made) here. Credentials are read only
to know which strings must never appear in a request; they are never copied anywhere.

A dry run without a usable account gets an anonymous session that sends nothing, and
placeholders where the account goes.
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING

from ...bundle.build import SDK_CHANNELS
from ..base import BackendError
from .errors import CREDENTIALS_FIX, aws_failure, error_code

if TYPE_CHECKING:
    from ...config.model import TrainConfig

ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/\S+$")
ACCOUNT_PLACEHOLDER = "<AWS-ACCOUNT-ID>"


def check_region(region: str) -> None:
    """Refuse a region SageMaker does not run in (botocore's endpoint data; no call)."""
    import boto3

    session = boto3.session.Session()
    known = set()
    for partition in session.get_available_partitions():
        known.update(session.get_available_regions("sagemaker", partition_name=partition))
    if region not in known:
        close = difflib.get_close_matches(region, sorted(known), n=3, cutoff=0.5)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise BackendError(f"unknown AWS region {region!r}{hint}: set `region` in the config to a region "
                           "where SageMaker runs, e.g. us-east-1")


def boto_session(config: TrainConfig):
    """(boto3 session for the config's profile and region, the credential strings that must never
    appear in a request). Raises BackendError when there are no usable credentials."""
    import boto3
    from botocore.exceptions import BotoCoreError, ProfileNotFound

    try:
        session = boto3.Session(profile_name=config.profile, region_name=config.region)
    except ProfileNotFound:
        raise BackendError(f"AWS profile {config.profile!r} (`profile` in the config) is not in ~/.aws/config or "
                           f"~/.aws/credentials: fix the name, or run `aws configure --profile {config.profile}`"
                           ) from None
    try:
        credentials = session.get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
    except BotoCoreError as e:
        raise BackendError(f"cannot load AWS credentials: {e}. {CREDENTIALS_FIX}") from None
    if frozen is None or not frozen.access_key or not frozen.secret_key:
        raise BackendError(f"no AWS credentials found. {CREDENTIALS_FIX}")
    # Strings that must never appear in the request (short test dummies would match anything).
    secrets = [s for s in (frozen.access_key, frozen.secret_key, frozen.token) if s and len(s) >= 16]
    return session, secrets


class Offline(Exception):
    """A call a placeholder dry run keeps from leaving this machine."""


def anonymous_session(config: TrainConfig):
    """A boto3 session for a dry run without a usable AWS account: no request leaves this machine
    (the CreateTrainingJob request is stopped by the recorder before that; anything else the SDK
    tries fails here, and the SDK carries on without it)."""
    import boto3

    def offline(**kwargs):
        raise Offline("a dry run without AWS credentials sends nothing")

    session = boto3.Session(region_name=config.region)
    session.events.register("before-send", offline)
    return session


def placeholder_role(config: TrainConfig, account: str = ACCOUNT_PLACEHOLDER) -> str:
    """The role ARN a dry run shows when it cannot look the role up."""
    name = config.iam_role_name
    if name and name.startswith("arn:"):
        return name
    return f"arn:aws:iam::{account}:role/{name or '<iam_role_name>'}"


def caller(session) -> tuple[str, str, str]:
    """(account, partition, caller ARN) from STS GetCallerIdentity: this also proves the credentials."""
    try:
        identity = session.client("sts").get_caller_identity()
    except Exception as e:
        raise aws_failure("AWS did not accept the credentials", e, "Refresh them (`aws sso login`, "
                          "`aws configure`) or choose another `profile`") from None
    arn = identity["Arn"]
    return identity["Account"], arn.split(":")[1], arn


def role_arn(session, config: TrainConfig, account: str, partition: str, caller_arn: str) -> str:
    """The ARN of the job's role: iam_role_name as an ARN, or by name through IAM GetRole, or
    (none configured) the role the caller has assumed."""
    from botocore.exceptions import ClientError

    name = config.iam_role_name
    if name and name.startswith("arn:"):
        if not ROLE_ARN_RE.match(name):
            raise BackendError(f"iam_role_name {name!r} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
        return name
    if not name:
        match = re.match(r"^arn:[^:]+:sts::\d+:assumed-role/([^/]+)/", caller_arn)
        if not match:
            raise BackendError("set iam_role_name in the config: the IAM role SageMaker runs the job as "
                               "(a role that trusts sagemaker.amazonaws.com), by name or ARN")
        name = match.group(1)
    try:
        return session.client("iam").get_role(RoleName=name.rsplit("/", 1)[-1])["Role"]["Arn"]
    except ClientError as e:
        code, _ = error_code(e)
        if code in ("NoSuchEntity", "NoSuchEntityException"):
            raise BackendError(f"IAM role {name!r} does not exist in account {account}: create it (trusted by "
                               "sagemaker.amazonaws.com), or set iam_role_name to an existing role's name or "
                               "ARN") from None
        if code in ("AccessDenied", "AccessDeniedException"):
            # May pass a role without reading IAM: the ARN of a role without a path.
            return f"arn:{partition}:iam::{account}:role/{name}"
        raise aws_failure(f"cannot look up IAM role {name!r}", e) from None
    except Exception as e:
        raise aws_failure(f"cannot look up IAM role {name!r}", e) from None


def ensure_bucket(session, bucket: str, account: str, region: str, ours: bool) -> None:
    """Create the default bucket if missing (owned by this account); a bucket named in output_path
    must exist already."""
    from botocore.exceptions import ClientError

    s3 = session.client("s3")
    try:
        s3.head_bucket(Bucket=bucket, **({"ExpectedBucketOwner": account} if ours else {}))
        return
    except ClientError as e:
        code, message = error_code(e)
        if code in ("403", "AccessDenied", "Forbidden"):
            raise BackendError(f"S3 bucket {bucket} exists but account {account} cannot use it (another "
                               "account owns it, or access is denied): set additional_args output_path to "
                               "an s3:// location you own") from None
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise aws_failure(f"cannot check S3 bucket {bucket}", e) from None
    except Exception as e:
        raise aws_failure(f"cannot check S3 bucket {bucket}", e) from None
    if not ours:
        raise BackendError(f"S3 bucket {bucket} (additional_args output_path) does not exist: create it, or "
                           "fix output_path")
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    except ClientError as e:
        if error_code(e)[0] not in ("BucketAlreadyOwnedByYou", "OperationAborted"):
            raise aws_failure(f"cannot create S3 bucket {bucket}", e,
                              "set additional_args output_path to an s3:// location you can write") from None


def check_name_free(session, name: str, region: str) -> None:
    """Refuse a job name already taken in the region (a lookup that fails lets CreateTrainingJob decide)."""
    from botocore.exceptions import ClientError

    try:
        session.client("sagemaker").describe_training_job(TrainingJobName=name)
    except ClientError:
        return  # not found (or not allowed to look): CreateTrainingJob decides
    except Exception:
        return
    raise BackendError(f"a training job named {name} already exists in {region}: choose another --name")


def remove_uploads(session, request: dict | None) -> None:
    """After a refused CreateTrainingJob, delete what this call uploaded (its SDK channels only)."""
    if not request:
        return
    try:
        s3 = session.client("s3")
        for channel in request.get("InputDataConfig") or []:
            if channel.get("ChannelName") not in SDK_CHANNELS:
                continue
            uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
            bucket, _, prefix = uri.removeprefix("s3://").partition("/")
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    except Exception:
        pass  # best effort: the job was refused either way
