"""A notebook with a given accelerate release: its facts stand in for the installed metadata
(sm_magic.software.requirements.installed_release), so a test of which accelerate a job installs says which
release the notebook has instead of depending on what the index installed today."""

from __future__ import annotations

import pytest

from sm_magic.software import requirements as reqs

# accelerate 1.16.0 as PyPI states it: the first release that needs Python >= 3.11 and torch >= 2.6.
ACCELERATE_1_16 = reqs.Release("1.16.0", ">=3.11.0", ">=2.6.0")


def notebook_accelerate(monkeypatch: pytest.MonkeyPatch, release: reqs.Release | str) -> reqs.Release:
    """Make the notebook's accelerate `release` (a Release, or a version in sm_magic's table)."""
    if isinstance(release, str):
        found = reqs.launcher_release(release)
        assert found is not None, f"accelerate {release} is not in sm_magic's table: give its facts as a Release"
        release = found
    monkeypatch.setattr(reqs, "installed_release", lambda: release)
    return release


def installed() -> reqs.Release:
    """The notebook's accelerate as installed (its own metadata)."""
    release = reqs.installed_release()
    assert release is not None
    return release
