"""sm_magic: run a notebook cell as a managed training job, on Amazon SageMaker or this machine.

`%load_ext sm_magic` registers the magics; `sm_magic.launch(...)` and `sm_magic.attach(name)`
do the same from plain Python. Attributes load on first use, so the job runner (which imports
this package) starts without pandas, pydantic or IPython.
"""

__version__ = "0.1.0"

_LAZY = {
    "launch": ("api", "launch"),
    "attach": ("sweeps", "attach"),   # a job's name gives its Job, a sweep's name its Sweep
    "sweep": ("sweep_launch", "sweep"),
    "Sweep": ("sweeps", "Sweep"),
    "LaunchError": ("launch_checks", "LaunchError"),
    "Job": ("job", "Job"),
    "JobFailedError": ("job", "JobFailedError"),
    "TrainConfig": ("config", "TrainConfig"),
    "ConfigError": ("config", "ConfigError"),
    # The module itself, which is callable: `sm_magic.compare(jobs)` and `sm_magic.compare.plot(jobs,
    # metric)`. (Importing sm_magic.compare binds the module to this name whatever __getattr__ says.)
    "compare": ("compare", None),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        loaded = importlib.import_module(f"{__name__}.{module}")
        return loaded if attr is None else getattr(loaded, attr)
    raise AttributeError(f"module 'sm_magic' has no attribute {name!r}")


def load_ipython_extension(ipython):
    """`%load_ext sm_magic`: register the magics."""
    from .magic import load_ipython_extension as load

    load(ipython)


__all__ = ["launch", "attach", "sweep", "Sweep", "compare", "Job", "JobFailedError", "TrainConfig", "ConfigError", "LaunchError"]
