"""Where jobs run. `get_backend(name)` returns a Backend, `backend_class(name)` its class (what it
says about itself: Traits, host facts); each backend's module is imported only when used.

base.py is the contract every layer above uses; local/, sagemaker/ and local_container.py
implement it. They import base.py and the layers below backends/ (bundle/, software/, metrics/,
config/, display/, container/, errors.py, console.py), never the layers above and never each other,
except local_container.py, the SDK's local mode on the local backend's job directory, which is
built of the other two.
"""

from __future__ import annotations

import importlib
import os
import threading

from .base import TERMINAL_STATUSES, Backend, BackendError, JobState, SubmitOptions, Traits, Transition

BACKEND_NAMES = ("local", "sagemaker", "local-container")
_CLASSES = {"local": ("local.backend", "LocalBackend"), "sagemaker": ("sagemaker.backend", "SageMakerBackend"),
            "local-container": ("local_container", "LocalContainerBackend")}


def backend_class(name: str) -> type[Backend]:
    """The class of the backend called `name`, read without making one.

    Args:
        name: "local", "sagemaker" or "local-container".

    Returns:
        The class, whose `traits`, `find_options`, `host_gpus`, `max_hosts` and
        `image_instance_type` describe the backend.
    """
    if name not in _CLASSES:
        raise BackendError(f"unknown backend {name!r}: choose one of {', '.join(BACKEND_NAMES)}")
    module, cls = _CLASSES[name]
    return getattr(importlib.import_module(f".{module}", __name__), cls)


def get_backend(name: str, **options) -> Backend:
    """The backend called `name` ("local", "sagemaker", "local-container")."""
    if name == "sagemaker":
        return _sagemaker_backend(**options)
    return backend_class(name)(**options)


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
            backend = _sagemaker_backends[key] = backend_class("sagemaker")(**options)
        return backend


__all__ = ["Backend", "BackendError", "JobState", "SubmitOptions", "Traits", "Transition", "TERMINAL_STATUSES",
           "get_backend", "backend_class", "BACKEND_NAMES"]
