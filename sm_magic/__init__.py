"""sm_magic: run a notebook cell as a managed training job, on Amazon SageMaker or this machine.

`%load_ext sm_magic` registers the magics; `sm_magic.launch(...)` and `sm_magic.attach(name)`
do the same from plain Python. Attributes load on first use, so the job runner (which imports
this package) starts without pandas, pydantic or IPython.
"""

__version__ = "0.1.0"

_LAZY = {
    "launch": ("plan.planner", "launch"),
    "attach": ("sweeps.sweep", "attach"),   # a job's name gives its Job, a sweep's name its Sweep
    "sweep": ("sweeps.launch", "sweep"),
    "Sweep": ("sweeps.sweep", "Sweep"),
    "LaunchError": ("plan.checks", "LaunchError"),
    "Job": ("jobs.job", "Job"),
    "JobFailedError": ("jobs.job", "JobFailedError"),
    "TrainConfig": ("config.model", "TrainConfig"),
    "ConfigError": ("config.model", "ConfigError"),
    "compare": ("sweeps.compare", "compare"),   # and `sm_magic.compare.plot(jobs, metric)`
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        loaded = importlib.import_module(f"{__name__}.{module}")
        return getattr(loaded, attr)
    raise AttributeError(f"module 'sm_magic' has no attribute {name!r}")


def load_ipython_extension(ipython):
    """`%load_ext sm_magic`: register the magics."""
    from .magic.magics import load_ipython_extension as load

    load(ipython)


__all__ = ["launch", "attach", "sweep", "Sweep", "compare", "Job", "JobFailedError", "TrainConfig", "ConfigError", "LaunchError"]
