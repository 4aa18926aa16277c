"""The Backend protocol and JobState, in SageMaker's own vocabulary."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..errors import RuntimeProblem

if TYPE_CHECKING:  # the local job runner imports this module and must stay quick to start
    from ..bundle.build import Bundle
    from ..config.model import TrainConfig

TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Stopped"})


def local_path(uri: str) -> Path:
    """The directory or file an input channel's URI names when it is not s3:// (a path, or file://)."""
    return Path(uri.removeprefix("file://")).expanduser().absolute()


class BackendError(RuntimeProblem, RuntimeError):
    """A backend could not do what was asked; the message says what to change."""


@dataclass
class Transition:
    """One SecondaryStatusTransition: a secondary status, when it began and ended, and why."""

    status: str
    start: float
    end: float | None = None
    message: str = ""

    @property
    def seconds(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - self.start)


@dataclass
class JobState:
    """What DescribeTrainingJob answers, for any backend."""

    name: str
    status: str = "InProgress"                 # TrainingJobStatus
    secondary_status: str = "Starting"         # SecondaryStatus
    transitions: list[Transition] = field(default_factory=list)
    failure_reason: str | None = None
    model_artifacts: str | None = None      # S3 URI or local path of model.tar.gz
    creation_time: float = 0.0
    training_start_time: float | None = None
    training_end_time: float | None = None
    training_seconds: int | None = None
    billable_seconds: int | None = None
    instance_type: str = ""
    instance_count: int = 1
    hyperparameters: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def copy(self) -> "JobState":
        """A state the caller may change (its timeline, hyperparameters, extra) without changing
        this one, which a backend keeps for its next answer."""
        return replace(self, transitions=list(self.transitions), hyperparameters=dict(self.hyperparameters),
                       extra=dict(self.extra))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "JobState":
        data = dict(data)
        data["transitions"] = [Transition(**t) for t in data.get("transitions", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class SubmitOptions:
    """What a launch asks of a backend besides the bundle and the config."""

    # Simulated spot interruptions, seconds into each successive run of the hosts; only a
    # backend with `simulates_interruptions` takes them (the planner refuses them elsewhere).
    interruptions: tuple[float, ...] = ()


@dataclass(frozen=True)
class Traits:
    """What a backend is, as the planner and the sweeps need to know it before one is made
    (making a SageMakerBackend makes AWS clients): read from the class, `backend_class(name).traits`."""

    in_image: bool = False           # its jobs run in a training image, chosen so their requirements install there
    job_dir: bool = False            # keeps each job in a directory on this machine (the `jobs_dir` option)
    warm_pools: bool = False         # keeps instances warm after a job (keep_alive_period_in_seconds)
    network_isolation: bool = False  # honours additional_args enable_network_isolation (wheels in the bundle)
    bundle_goes: str = ""            # where the bundle is sent, as a message says it ("uploaded to S3")


class BackendClass:
    """What every backend class says about itself without being made; a backend overrides what
    differs. Host facts are this machine's: None where the job's instances decide them."""

    traits: ClassVar[Traits] = Traits()

    @classmethod
    def find_options(cls, config: "TrainConfig") -> dict:
        """The options (no secrets) that make a backend able to find a job of `config` again,
        recorded with the job for attach."""
        return {}

    @classmethod
    def host_gpus(cls) -> int | None:
        """GPUs of this machine a job's hosts get; None when the instance type decides."""
        return None

    @classmethod
    def max_hosts(cls) -> int | None:
        """How many hosts this machine runs at once, the jobs of a sweep together; None: no bound here."""
        return None

    @classmethod
    def image_instance_type(cls, config: "TrainConfig") -> str:
        """The instance type whose training image the job runs in (with `traits.in_image`)."""
        return config.ec2_instance_type


class Backend(Protocol):
    """Where jobs run: everything the planner, `Job` and the monitor ask of one. Every method may
    raise BackendError with a message a user can act on. Implementations derive from
    BackendClass for what they say about themselves."""

    name: str
    poll_interval: float            # seconds between two polls of one job (describe, logs)
    simulates_interruptions: bool   # takes SubmitOptions.interruptions
    traits: ClassVar[Traits]

    # What the class says about itself, read without making one: BackendClass documents each.
    @classmethod
    def find_options(cls, config: "TrainConfig") -> dict: ...

    @classmethod
    def host_gpus(cls) -> int | None: ...

    @classmethod
    def max_hosts(cls) -> int | None: ...

    @classmethod
    def image_instance_type(cls, config: "TrainConfig") -> str: ...

    def check_config(self, config: "TrainConfig") -> None:
        """Refuse, before anything is written, a config this backend cannot run."""

    def check_writable(self) -> None:
        """Refuse, before the bundle is built, when the job's files could not be written."""

    def job_location(self, name: str) -> str:
        """Where job `name` lives, as the registry records it (a directory, or the job name)."""

    def dry_run(self, bundle: "Bundle", config: "TrainConfig") -> str:
        """What submit would do with the bundle, as text; nothing is started or sent."""

    def submit(self, bundle: "Bundle", config: "TrainConfig", options: SubmitOptions = SubmitOptions()) -> str:
        """Start the bundle as job `bundle.name`; returns the job name once it is running."""

    def describe(self, name: str) -> JobState:
        """The job's current state."""

    def logs(self, name: str, cursor: Any = None) -> tuple[list[str], Any]:
        """Log lines after `cursor` (None: from the start) and the cursor to pass next time."""

    def stop(self, name: str) -> None:
        """Ask the job to stop; it ends Stopped with what it saved kept."""


# One metric row from outside the log: (step, {name: value}).
ScalarRow = tuple[int, dict[str, float]]


class ScalarSource(Protocol):
    """What a backend may also offer (optional: `scalars_of` finds it): the scalars a job writes
    as TensorBoard event files under $SM_OUTPUT_DIR/tensorboard, read incrementally."""

    def scalars(self, name: str, cursor: Any = None) -> tuple[list[ScalarRow], Any]:
        """Rows new since `cursor` (None: from the start) and the cursor to pass next time.
        Raises tensorboard_events.TensorBoardMissing when event files exist and the tensorboard
        package is not installed, BackendError when they cannot be read."""


def scalars_of(backend: Backend):
    """The backend's `scalars` method, or None when it has none."""
    return getattr(backend, "scalars", None)
