"""sm_magic: run a notebook cell as a managed training job, on Amazon SageMaker or this machine.

`%load_ext sm_magic` registers the magics; `sm_magic.launch(...)` and `sm_magic.attach(name)`
do the same from plain Python. Attributes load on first use, so the job runner (which imports
this package) starts without pandas, pydantic or IPython.
"""

__version__ = "0.1.0"

_LAZY = {
    "launch": ("api", "launch"),
    "attach": ("api", "attach"),
    "LaunchError": ("launch_checks", "LaunchError"),
    "Job": ("job", "Job"),
    "JobFailedError": ("job", "JobFailedError"),
    "TrainConfig": ("config", "TrainConfig"),
    "ConfigError": ("config", "ConfigError"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    raise AttributeError(f"module 'sm_magic' has no attribute {name!r}")


def load_ipython_extension(ipython):
    """`%load_ext sm_magic`: register the magics."""
    from .magic import load_ipython_extension as load

    load(ipython)


__all__ = ["launch", "attach", "Job", "JobFailedError", "TrainConfig", "ConfigError", "LaunchError"]
