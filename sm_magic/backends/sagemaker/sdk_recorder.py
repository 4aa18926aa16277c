"""Watching the SDK build and send a CreateTrainingJob request.

The request is recorded as botocore receives it (event handlers on the boto3 session), so what
`--dry-run` prints is what a real submit sends: a dry run takes the same path through the SDK,
with a Session whose uploads only compute their S3 URIs and a handler that stops the call before
it leaves this machine. The same handler refuses to send a request that holds the session's
credentials.
"""

from __future__ import annotations

import copy
import json
import os
from functools import lru_cache

from ..base import BackendError


class DryRunStop(Exception):
    """Raised from the botocore handler to stop a dry run's CreateTrainingJob before it is sent."""


class Recorder:
    """botocore handlers on CreateTrainingJob: keep the params as the client received them, refuse
    to send credentials, stop a dry run, keep the response. Disarmed after our call (the SDK caches
    clients per session, and may reuse the first as its process default)."""

    def __init__(self, dry_run: bool, secrets: list[str]):
        self.dry_run, self.secrets, self.armed = dry_run, secrets, True
        self.request: dict | None = None
        self.response: dict | None = None

    def register(self, boto_session) -> None:
        events = boto_session.events
        events.register("provide-client-params.sagemaker.CreateTrainingJob", self.on_params)
        events.register("before-call.sagemaker.CreateTrainingJob", self.on_before_call)
        events.register("after-call.sagemaker.CreateTrainingJob", self.on_after_call)

    def on_params(self, params, **kwargs):
        if self.armed:
            self.request = copy.deepcopy(params)

    def on_before_call(self, **kwargs):
        if not self.armed:
            return
        text = json.dumps(self.request, default=str)
        if any(secret in text for secret in self.secrets):
            raise BackendError("refusing to submit: the request contains this session's AWS credentials "
                               "(look at additional_args, the script arguments and the config); nothing was sent")
        if self.dry_run:
            raise DryRunStop()

    def on_after_call(self, parsed=None, **kwargs):
        # Emitted for error responses too: only a response with the job's ARN means "created".
        if self.armed and isinstance(parsed, dict) and parsed.get("TrainingJobArn"):
            self.response = parsed


@lru_cache(maxsize=1)
def session_class():
    """The SDK Session subclass submit uses (made on first use: the SDK takes seconds to import)."""
    from sagemaker.core.helper.session_helper import Session

    class BundleSession(Session):
        """A Session whose default bucket is the one sm_magic resolved (no STS call to a regional
        endpoint, no bucket creation), and whose uploads, in a dry run, only compute the URI."""

        dry_run = False

        def default_bucket(self):
            return self._default_bucket_name_override

        def upload_data(self, path, bucket=None, key_prefix="data", callback=None, extra_args=None):
            if not self.dry_run:
                return super().upload_data(path, bucket=bucket, key_prefix=key_prefix, callback=callback,
                                           extra_args=extra_args)
            bucket, key_prefix = self.determine_bucket_and_prefix(bucket=bucket, key_prefix=key_prefix,
                                                                  sagemaker_session=self)
            uri = f"s3://{bucket}/{key_prefix}"
            return uri if os.path.isdir(path) else f"{uri}/{os.path.basename(path)}"

    return BundleSession
