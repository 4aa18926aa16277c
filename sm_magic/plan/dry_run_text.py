"""The dry run's text that every backend shares: the training image and requirements a launch
resolved, and the command its entry runs on the first host."""

from __future__ import annotations

import json
import shlex

from ..backends import Backend
from ..bundle.build import Bundle, Software
from ..config.model import TrainConfig
from ..container.entry import launch_command
from ..software.images import instance_gpus


def software_lines(sw: Software | None) -> list[str]:
    if sw is None:  # nothing built
        return []
    out = []
    if sw.image is not None:
        out += ["", f"Image: {sw.image.uri}", f"  chosen: {sw.image.reason}"]
        if sw.launcher is not None and sw.launcher.note:
            out.append(f"  {sw.launcher.note}")
    out += ["", f"requirements.txt ({sw.origin}):", *("  " + r for r in sw.requirements)]
    if sw.wheels is not None:
        out += [f"  installed offline (network isolation) from {len(sw.wheels.files)} wheels carried in the bundle, "
                f"{sw.wheels.size / 1e6:.1f} MB" + (" (from the cache)" if sw.wheels.cached else "")]
    return out


def command_lines(config: TrainConfig, backend: type[Backend], bundle: Bundle) -> list[str]:
    """What the entry command runs on the first host, when its GPU count is known (this machine's,
    for a backend whose hosts run here; else the instance type's)."""
    hosts = [f"algo-{i}" for i in range(1, config.num_machines + 1)]
    gpus: int | None
    if config.use_cpu:
        gpus = 0
    else:
        here = backend.host_gpus()
        gpus = here if here is not None else instance_gpus(config.ec2_instance_type)
    out = ["", f"Entry command: {' '.join(bundle.entry_command)}"]
    if gpus is None:
        if config.distributed_type == "NO":
            return out + [f"  on {config.ec2_instance_type} it runs accelerate launch with one process "
                          "(any other GPU of the instance stays idle)"]
        return out + [f"  on {config.ec2_instance_type} it runs accelerate launch with one process per GPU"]
    spec = json.loads((bundle.path / "sm_launch.json").read_text())
    cmd, notes = launch_command(spec, {"SM_HOSTS": json.dumps(hosts), "SM_CURRENT_HOST": hosts[0],
                                       "SM_NUM_GPUS": str(gpus)}, bundle_dir=".")
    return out + [f"  on {hosts[0]} ({gpus} GPU{'s' if gpus != 1 else ''}) it runs: "
                  f"{shlex.join(['accelerate', 'launch', *cmd[3:]])}", *(f"  note: {n}" for n in notes)]
