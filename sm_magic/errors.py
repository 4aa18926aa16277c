"""The one base of every error sm_magic raises for a user to read.

Each surface shows these the same way, as the message alone and never a traceback: the magics
as IPython's UsageError, `sm-magic` as one `sm-magic: <message>` on stderr with the class's
`exit_code`. Two kinds:

- `UsageProblem` (exit status 2): something the user gave cannot be used (a flag, the config,
  the cell, an exported bundle); changing it fixes the problem, and nothing was written.
- `RuntimeProblem` (exit status 1): something outside the input failed (the job, the backend,
  the registry); the same command may work later.

Each concrete error class keeps its historical base too (ConfigError is still a ValueError,
BackendError a RuntimeError), so code that catches those keeps working.
"""

from __future__ import annotations

USAGE_EXIT = 2
RUNTIME_EXIT = 1


class SmMagicError(Exception):
    """An error whose message is the whole story for the user: shown without a traceback."""

    exit_code = USAGE_EXIT


class UsageProblem(SmMagicError):
    """The input (flag, config, cell, bundle) cannot be used; the message says what to change."""

    exit_code = USAGE_EXIT


class RuntimeProblem(SmMagicError):
    """Something the input does not control failed (job, backend, registry)."""

    exit_code = RUNTIME_EXIT

