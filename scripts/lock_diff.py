"""`make test-latest`: which installed releases differ from requirements/dev.lock, one line each."""

import importlib.metadata as md
import re
import sys
from pathlib import Path

LOCK = Path(__file__).resolve().parent.parent / "requirements" / "dev.lock"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> int:
    locked = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if m:
            locked[canonical(m.group(1))] = m.group(2)
    installed = {canonical(d.metadata["Name"]): d.version for d in md.distributions()}
    newer = sorted((name, locked[name], version) for name, version in installed.items()
                   if name in locked and version.split("+")[0] != locked[name].split("+")[0])
    extra = sorted(set(installed) - set(locked) - {"sm-magic"})
    print(f"{len(newer)} of {len(locked)} locked packages at another release than the lock:")
    for name, was, now in newer:
        print(f"  {name} {was} -> {now}")
    if extra:
        print("not in the lock: " + ", ".join(f"{n} {installed[n]}" for n in extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
