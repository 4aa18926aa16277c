"""Where jobs run. `get_backend(name)` returns a Backend; each is imported only when used."""

from __future__ import annotations

from .base import Backend, BackendError, JobState, Transition, TERMINAL_STATUSES

BACKEND_NAMES = ("local", "sagemaker", "local-container")


def get_backend(name: str, **options) -> Backend:
    """The backend called `name` ("local", "sagemaker", "local-container")."""
    if name == "local":
        from .local import LocalBackend

        return LocalBackend(**options)
    if name in ("sagemaker", "local-container"):
        raise BackendError(f"the {name} backend is not available in this version of sm_magic; "
                           "use --backend local (or ec2_instance_type: local) to run on this machine")
    raise BackendError(f"unknown backend {name!r}: choose one of {', '.join(BACKEND_NAMES)}")


__all__ = ["Backend", "BackendError", "JobState", "Transition", "TERMINAL_STATUSES", "get_backend",
           "BACKEND_NAMES"]
