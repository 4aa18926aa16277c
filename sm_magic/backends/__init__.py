"""Where jobs run. `get_backend(name)` returns a Backend; each is imported only when used."""

from __future__ import annotations

import os
import threading

from .base import Backend, BackendError, JobState, SubmitOptions, Transition, TERMINAL_STATUSES

BACKEND_NAMES = ("local", "sagemaker", "local-container")


def get_backend(name: str, **options) -> Backend:
    """The backend called `name` ("local", "sagemaker", "local-container")."""
    if name == "local":
        from .local.backend import LocalBackend

        return LocalBackend(**options)
    if name == "sagemaker":
        return _sagemaker_backend(**options)
    if name == "local-container":
        from .local_container import LocalContainerBackend

        return LocalContainerBackend(**options)
    raise BackendError(f"unknown backend {name!r}: choose one of {', '.join(BACKEND_NAMES)}")


_SAGEMAKER_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER", "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS",
                  "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION", "SM_MAGIC_SAGEMAKER_POLL")
_sagemaker_backends: dict = {}
_sagemaker_lock = threading.Lock()


def _sagemaker_backend(**options) -> Backend:
    """One SageMakerBackend per settings, shared by every job launched or attached with them, so
    its clients are made once and one ListTrainingJobs can serve all watched jobs."""
    key = (tuple(sorted(options.items())), tuple(os.environ.get(v) for v in _SAGEMAKER_ENV))
    with _sagemaker_lock:
        backend = _sagemaker_backends.get(key)
        if backend is None:
            from .sagemaker.backend import SageMakerBackend

            backend = _sagemaker_backends[key] = SageMakerBackend(**options)
        return backend


__all__ = ["Backend", "BackendError", "JobState", "SubmitOptions", "Transition", "TERMINAL_STATUSES", "get_backend",
           "BACKEND_NAMES"]
