"""Submitting a bundle to Amazon SageMaker through SDK v3's ModelTrainer.

`submit(bundle, config)` checks what needs no AWS call (`check_config`, the job name, the inputs),
looks up the account (aws_account), builds the trainer (sagemaker_request) and has it make the
CreateTrainingJob request (`ModelTrainer._create_training_job_args`: it uploads the bundle as the
`code` channel and its container drivers as `sm_drivers`), renames the job to exactly
`bundle.name`, and creates it with sagemaker-core's `TrainingJob.create`. The request is recorded
as botocore receives it (sdk_recorder), so a dry run takes the same path and returns the request
that a real submit would send; `dry_run_text` shows it. Refusals become a BackendError that names
what to fix (sagemaker_errors).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from ...bundle.build import JOB_NAME_RE, Bundle, check_channel
from ...config.masking import masked
from ...config.model import LOCAL_INSTANCE_TYPES, TrainConfig
from ...console import progress
from ..base import BackendError, local_path
from . import s3_inputs
from .args import check_additional_args
from .aws_account import (
    ACCOUNT_PLACEHOLDER,
    anonymous_session,
    boto_session,
    caller,
    check_name_free,
    check_region,
    ensure_bucket,
    placeholder_role,
    remove_uploads,
    role_arn,
)
from .errors import aws_failure, create_failure
from .limits import check_environment, check_instance_type, check_repository_access
from .pricing import Price, launch_line, training_price
from .request import (
    DEFAULT_MAX_RUN,
    SDK_CONFIG,
    QuietHyperparameterWarning,
    build_trainer,
    entry_command,
    image_for,
    role_check_skipped,
    sagemaker_environment,
    stopping_seconds,
)
from .sdk_recorder import DryRunStop, Recorder, session_class


@dataclass
class Submission:
    """A submitted (or, with dry_run, only prepared) training job."""

    name: str                 # the job name, exactly bundle.name
    arn: str | None        # None for a dry run
    request: dict | None   # the CreateTrainingJob request, PascalCase, as passed to the boto3 client (None: none sent)
    output_path: str          # OutputDataConfig.S3OutputPath: s3://bucket/<prefix>
    notes: list = field(default_factory=list)  # what a dry run could not look up
    price: Price | None = None  # one instance's on-demand price, when known (pricing.py)

    def cost_line(self, config: TrainConfig) -> str:
        return cost_line(config, self.price)

    @property
    def model_data(self) -> str:
        """Where SageMaker puts model.tar.gz when the job completes."""
        return f"{self.output_path}/{self.name}/output/model.tar.gz"


def dry_run_text(submission: Submission) -> str:
    """The request pretty-printed, as JSON in the API's PascalCase (what --dry-run shows), after
    what the dry run could not look up."""
    request = json.dumps(masked(submission.request), indent=2, default=str)  # Environment may hold a token
    if not submission.notes:
        return request
    return "\n".join([*(f"Note: {n}" for n in submission.notes), "", "CreateTrainingJob request:", request])


def check_config(config: TrainConfig) -> dict:
    """What SageMaker would refuse in the config alone, with no AWS call; the job's options."""
    if config.ec2_instance_type in LOCAL_INSTANCE_TYPES:
        local = "local-container" if config.ec2_instance_type == "local_container" else "local"
        raise BackendError(f"ec2_instance_type {config.ec2_instance_type} runs on this machine: set an ml.* "
                           "instance type (e.g. --instance-type ml.g5.xlarge) for SageMaker, or use "
                           f"--backend {local}")
    check_instance_type(config.ec2_instance_type)
    options = check_additional_args(config)
    check_repository_access(options)
    check_environment(sagemaker_environment(config, options.get("environment")),
                      ours=len(sagemaker_environment(config)))
    if config.use_spot_instances and config.max_wait is None:
        raise BackendError(f"use_spot_instances needs max_wait: the seconds the job may take, waiting for spot "
                           f"capacity included (at least max_run, {config.max_run or DEFAULT_MAX_RUN} s); "
                           "add max_wait under additional_args")
    stopping_seconds(config)
    check_region(config.region)
    return options


def _offline_checks(bundle: Bundle, config: TrainConfig) -> dict:
    """Everything that needs no AWS call, before any is made."""
    if not JOB_NAME_RE.match(bundle.name):
        raise BackendError(f"{bundle.name!r} is not a valid training job name: 1 to 63 letters, digits and "
                           "hyphens, starting with a letter or digit")
    options = check_config(config)
    for channel, uri in bundle.inputs.items():
        check_channel(channel)
        if not str(uri).startswith("s3://") and not local_path(uri).exists():
            raise BackendError(f"input channel {channel}: {uri} is neither an s3:// URI nor a local path that "
                               "exists (a local path is uploaded to S3 at launch)")
        if not str(uri).startswith("s3://"):
            s3_inputs.local_files(channel, local_path(uri))  # a link out of it: refused before AWS
    entry_command(bundle)
    options["_image"] = image_for(bundle, config).uri
    return options


def cost_line(config: TrainConfig, price: Price | None) -> str:
    """What the job costs at most, in one line (an estimate, and said so)."""
    max_run, _ = stopping_seconds(config)
    return launch_line(price, config.ec2_instance_type, config.num_machines, max_run, config.use_spot_instances)


def check_max_cost(config: TrainConfig, price: Price | None) -> None:
    """max_cost against the launch's worst case; an unknown price cannot pass it."""
    if config.max_cost is None:
        return
    max_run, _ = stopping_seconds(config)
    line = cost_line(config, price)
    if price is None:
        raise BackendError(f"max_cost {config.max_cost:g} USD cannot be checked: {line}. Nothing was uploaded; "
                           "remove max_cost, or allow pricing:GetProducts to the job's AWS identity")
    worst = price.of(max_run, config.num_machines)
    if worst > config.max_cost:
        raise BackendError(f"max_cost {config.max_cost:g} USD: this launch may cost up to {worst:,.2f} USD ({line}). "
                           "Nothing was uploaded; lower max_run, use fewer or smaller instances, or raise max_cost")


def submit(bundle: Bundle, config: TrainConfig, *, dry_run: bool = False) -> Submission:
    """Create training job `bundle.name` from the bundle; with dry_run, build the same request and
    stop before anything is uploaded or created. Raises BackendError naming what to fix."""
    options = _offline_checks(bundle, config)
    notes: list[str] = []  # what a dry run could not look up
    try:
        session, secrets = boto_session(config)
        account, partition, caller_arn = caller(session)
    except BackendError as e:
        if not dry_run:
            raise
        # A dry run shows the request before AWS is set up: placeholders where the account goes.
        session, secrets, caller_arn = anonymous_session(config), [], None
        account, partition = ACCOUNT_PLACEHOLDER, "aws"
        notes += [f"not looked up in AWS ({str(e).split('. ')[0].split(': ')[-1]}): the request shows "
                  f"{ACCOUNT_PLACEHOLDER} where the account goes (the role ARN, the bucket).",
                  "a real launch also needs AWS credentials (`aws configure`, `aws sso login` or AWS_PROFILE)"
                  + ("" if config.iam_role_name else " and iam_role_name in the config (a role trusted by "
                                                     "sagemaker.amazonaws.com)") + "."]
    price = training_price(config.ec2_instance_type, config.region, session if caller_arn else None)
    check_max_cost(config, price)  # before anything is uploaded
    try:
        role = role_arn(session, config, account, partition, caller_arn) if caller_arn else placeholder_role(config)
    except BackendError as e:
        if not dry_run:
            raise
        role = placeholder_role(config, account)
        notes.append(f"the role is a placeholder: {e}")
    if "output_path" in options:
        bucket, _, prefix = options["output_path"].removeprefix("s3://").partition("/")
        ours = False
    else:
        bucket, prefix, ours = f"sagemaker-{config.region}-{account}", config.base_job_name, True
    output_path = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    if caller_arn:
        check_name_free(session, bundle.name, config.region)
    if not dry_run:
        ensure_bucket(session, bucket, account, config.region, ours)
    inputs = {channel: uri if uri.startswith("s3://") else s3_inputs.upload(
        None if dry_run else session.client("s3"), channel, uri, bucket, dry_run=dry_run, log=progress)
              for channel, uri in bundle.inputs.items()}

    recorder = Recorder(dry_run, secrets)
    recorder.register(session)  # before the SDK creates its clients: they copy the session's handlers
    sdk_logger = logging.getLogger("sagemaker.core.utils.utils")
    quiet = QuietHyperparameterWarning()
    sdk_logger.addFilter(quiet)
    trainer = None
    try:
        from sagemaker.core.resources import TrainingJob

        sm_session = session_class()(boto_session=session, default_bucket=bucket, sagemaker_config=SDK_CONFIG)
        sm_session.dry_run = dry_run
        key_prefix = f"{prefix}/{bundle.name}" if prefix else bundle.name
        try:
            with role_check_skipped(bool(notes)):  # a placeholder role
                trainer = build_trainer(bundle, config, options, sm_session, role, output_path, key_prefix, inputs)
            args = trainer._create_training_job_args()  # uploads the bundle (not in a dry run)
        except BackendError:
            raise
        except Exception as e:
            raise aws_failure(f"cannot prepare training job {bundle.name}", e) from None
        args["training_job_name"] = bundle.name  # the SDK made its own timestamped name
        try:
            job = TrainingJob.create(session=session, region=config.region, **args)
        except DryRunStop:
            return Submission(bundle.name, None, recorder.request, output_path, notes, price)
        except Exception as e:
            if recorder.response is None:  # not created: nothing of this call may stay behind
                if not dry_run:
                    remove_uploads(session, recorder.request)
                raise e if isinstance(e, BackendError) else create_failure(bundle.name, e, config) from None
            job = None  # created; only the DescribeTrainingJob that follows failed
        arn = getattr(job, "training_job_arn", None) if job is not None else None
        arn = arn or (recorder.response or {}).get("TrainingJobArn")
        return Submission(bundle.name, arn, recorder.request, output_path, price=price)
    finally:
        recorder.armed = False
        sdk_logger.removeFilter(quiet)
        temp = getattr(trainer, "_temp_code_dir", None) if trainer is not None else None
        if temp is not None:
            temp.cleanup()
