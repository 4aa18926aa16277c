"""A sweep's grid: `--sweep NAME=V1,V2` flags (or a {name: [values]} mapping) checked, its points
in order, each point's script arguments and job name. Pure functions: nothing here plans,
writes or launches (launch.py does)."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence

from ..bundle.build import JOB_NAME_RE
from ..plan.checks import LaunchError
from ..plan.train_line import LineError

MAX_UNCONFIRMED = 100   # more jobs than this need --sweep ... --yes (yes=True): a typo can cost a fortune
MAX_JOBS = 10_000       # never more, even with --yes: every point is planned before the first starts
MAX_NAME = 63           # SageMaker's limit on a training job's name, kept on every backend

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_NUMBER_RE = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
EXAMPLE = "--sweep lr=0.01,0.05,0.1"


def parse_flags(specs: Sequence[str]) -> dict[str, list[str]]:
    """`--sweep NAME=V1,V2,...` flags as a grid, in the order given; LineError, naming the flag and
    what to write instead, for one that is not NAME=V1,V2 (no `=`, no name, an empty value)."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        where = f"--sweep {spec!r}"
        if "=" not in spec:
            raise LineError(f"{where}: expected NAME=V1,V2,... (the script argument's name, then its values), "
                            f"e.g. {EXAMPLE}")
        name, _, text = spec.partition("=")
        if not name.strip():
            raise LineError(f"{where}: no name before `=`: write the script argument's name, e.g. {EXAMPLE}")
        if not text.strip():
            raise LineError(f"{where}: no values after `=`: give them separated by commas, e.g. {EXAMPLE}")
        values = text.split(",")
        if any(not v.strip() for v in values):
            raise LineError(f"{where}: an empty value (two commas in a row, or one at either end): remove it")
        name = name.strip()
        if name in grid:
            raise LineError(f"{where}: {name} is swept twice: give all its values in one --sweep {name}=V1,V2,...")
        grid[name] = [v.strip() for v in values]
    return grid


def check_grid(grid: Mapping) -> dict[str, list[str]]:
    """The grid with every value as the string the script gets. LaunchError for an empty grid, a
    name that is not a script argument's name, two names for one argument (`batch-size` and
    `batch_size` are one argparse dest), a name with no values, and a value given twice (as text,
    or as the same number: 0.1 and 0.10)."""
    if not isinstance(grid, Mapping) or not grid:
        raise LaunchError("the sweep has no grid: give at least one argument and its values, e.g. "
                          f"grid={{'lr': [0.01, 0.1]}} ({EXAMPLE})")
    out: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for name, values in grid.items():
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            hint = " without its dashes" if isinstance(name, str) and name.startswith("-") else ""
            raise LaunchError(f"sweep name {name!r}: give the script argument's name{hint} (letters, digits, `_`, `-`, "
                              f"`.`, starting with a letter or `_`), e.g. {EXAMPLE}; each job gets --NAME VALUE")
        dest = _dest(name)
        if dest in seen:
            raise LaunchError(f"sweep names {seen[dest]} and {name} set the same script argument ({dest}): "
                              "sweep it once, with all its values")
        seen[dest] = name
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise LaunchError(f"sweep {name}: give its values as a list, e.g. [0.01, 0.1], not {values!r}")
        if not values:
            raise LaunchError(f"sweep {name}: no values: give at least one")
        texts = []
        known: dict[object, str] = {}
        for value in values:
            if isinstance(value, bool):
                raise LaunchError(f"sweep {name}: {value!r} is a Python bool, which a script's argparse reads as text: "
                                  "give the text the script's argument expects, e.g. 'true' and 'false'")
            if not isinstance(value, (str, int, float)):
                raise LaunchError(f"sweep {name}: {value!r} is not a string or a number; each value reaches the "
                                  "script as one command-line argument")
            text = str(value)
            if not text.strip():
                raise LaunchError(f"sweep {name}: an empty value; remove it")
            key = _same_value_key(text)
            if key in known:
                same = "is given twice" if known[key] == text else f"is the same number as {known[key]}"
                raise LaunchError(f"sweep {name}: {text} {same}; each value runs one job per combination, "
                                  "so give it once")
            known[key] = text
            texts.append(text)
        out[name] = texts
    return out


def _dest(name: str) -> str:
    """The argparse dest a `--NAME` option sets."""
    return name.replace("-", "_")


def _same_value_key(text: str) -> object:
    """What makes two values the same: their number when both are numbers, else their text."""
    if _NUMBER_RE.fullmatch(text.strip()):
        number = float(text)
        if math.isfinite(number):
            return number
    return text


def size(grid: Mapping[str, Sequence]) -> int:
    """How many jobs the grid makes (computed without making its points)."""
    return math.prod(len(values) for values in grid.values())


def check_size(grid: Mapping[str, Sequence], yes: bool) -> int:
    """The grid's job count; LaunchError past MAX_UNCONFIRMED without `yes`, and past MAX_JOBS."""
    n = size(grid)
    shape = " x ".join(f"{len(v)} {k}" for k, v in grid.items())
    if n > MAX_JOBS:
        raise LaunchError(f"the sweep makes {n:,} jobs ({shape}): at most {MAX_JOBS:,}; sweep fewer values")
    if n > MAX_UNCONFIRMED and not yes:
        raise LaunchError(f"the sweep makes {n:,} jobs ({shape}), more than {MAX_UNCONFIRMED}: add --yes "
                          "(yes=True) to launch them all, or sweep fewer values")
    return n


def points(grid: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
    """Every combination, the first name's values varying slowest (as nested loops in the order given)."""
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def point_args(values: Mapping[str, str], args: Sequence[str]) -> list[str]:
    """A point's script arguments: `--NAME VALUE` for each swept value, then the sweep's own
    arguments. A value starting with `-` goes as `--NAME=VALUE`, which argparse never takes for
    an option of its own."""
    swept: list[str] = []
    for name, value in values.items():
        swept += [f"--{name}={value}"] if value.startswith("-") else [f"--{name}", value]
    return [*swept, *args]


def check_args_free(grid: Mapping[str, Sequence[str]], args: Sequence[str]) -> None:
    """LaunchError when the script's own arguments set a swept name too (either spelling, `-` or
    `_`): the job would get both, and which one the script keeps is argparse's choice."""
    swept = {_dest(name): name for name in grid}
    for token in args:
        if token == "--":
            break  # what follows is positional, for the script
        if token.startswith("-") and not _NUMBER_RE.fullmatch(token) and token.strip("-"):
            key = token.lstrip("-").split("=", 1)[0]
            if _dest(key) in swept:
                name = swept[_dest(key)]
                raise LaunchError(f"--sweep {name}=... and the script argument {token} (after --) both set {key}: "
                                  f"remove {token} from the script's arguments (the sweep gives each job its own "
                                  f"{name}), or stop sweeping {name}")


def job_names(sweep_name: str, count: int) -> list[str]:
    """`<sweep>-<i>`, i from 1, zero-padded to the width of `count` (so they sort in order)."""
    width = len(str(count))
    return [f"{sweep_name}-{i:0{width}d}" for i in range(1, count + 1)]


def check_sweep_name(name: str, count: int, given: bool) -> str:
    """A sweep name whose jobs' names are valid training job names. `given`: the user chose it
    (--name), else it is base_job_name plus a timestamp."""
    fix = "choose a shorter --name" if given else "choose a shorter base_job_name, or give the sweep a --name"
    if not isinstance(name, str) or not JOB_NAME_RE.fullmatch(name):
        raise LaunchError(f"{name!r} is not a valid sweep name: its jobs are named NAME-1, NAME-2, ..., so use "
                          "letters, digits and hyphens, starting with a letter or digit (e.g. lr-sweep)")
    last = job_names(name, count)[-1]
    if len(last) > MAX_NAME:
        raise LaunchError(f"sweep name {name} is {len(name)} characters: its last job would be {last}, "
                          f"{len(last)} characters, and a job name has at most {MAX_NAME}: {fix}")
    return name


def values_text(values: Mapping[str, str]) -> str:
    """A point's values as one short text: `lr=0.01 batch-size=32`."""
    return " ".join(f"{k}={v}" for k, v in values.items())
