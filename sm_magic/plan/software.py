"""What a job's container installs and runs on: the bundle's requirements.txt and, on a backend that
runs a training image, that image (chosen so that the requirements install in it) and, for a job
without network, the wheels they install from. Decided before anything is written or uploaded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..backends import Backend
from ..bundle.build import Software
from ..bundle.includes import Code
from ..config.model import TrainConfig
from ..software import requirements as reqs
from ..software.images import Image, ImageError, choose
from ..software.wheelhouse import collect, without_passwords


def resolve(backend: type[Backend] | None, config: TrainConfig, code: Code, requirements_file: Path | None = None,
            log: Callable[[str], None] | None = None) -> Software:
    """The software for a job of `config` on `backend` (its class) running `code` (None: no
    backend yet, as for an export: the requirements as for the default image, nothing checked).
    `requirements_file` (--requirements) replaces the generated requirements.txt; so does the code
    tree's own.
    Raises ImageError or reqs.RequirementsError / WheelhouseError naming what to change."""
    own = Path(requirements_file) if requirements_file else code.own_requirements()

    def lines_for(image: Image | None) -> reqs.JobRequirements:
        # The accelerate for the image: the notebook's where it installs there, else the newest
        # of its major version that does (requirements.py).
        return reqs.for_job(code.texts, image.provides if image else reqs.HF_IMAGE_PROVIDES, own_file=own,
                            bundled=code.bundled, distributed_type=config.distributed_type,
                            launcher=reqs.job_launcher(image.python, image.versions) if image else None)

    if backend is None or not backend.traits.in_image:
        job = lines_for(None)
        if backend is None:  # an export: the bundle may go anywhere, and its container would need the password
            _refuse_passwords(job.lines, job.origin, "an exported bundle")
        # A local job runs in this environment and installs nothing: its requirements.txt is a record.
        return Software(without_passwords(job.lines), job.origin)
    instance_type = backend.image_instance_type(config)
    if instance_type != config.ec2_instance_type:
        config = config.model_copy(update={"ec2_instance_type": instance_type})
    computed: dict[str, reqs.JobRequirements] = {}

    def check(image: Image) -> list[str]:
        computed[image.uri] = lines_for(image)
        return reqs.image_problems(computed[image.uri], image.python, image.versions)

    image = choose(config, check)
    job = computed.get(image.uri) or lines_for(image)
    lines, origin = job.lines, job.origin
    wheels = None
    if backend.traits.network_isolation and config.additional_args.get("enable_network_isolation"):
        if image.python is None:
            raise ImageError(f"enable_network_isolation: the job installs its requirements from wheels carried in "
                             f"the bundle, built for the image's Python, and the Python of {image.uri} is not "
                             "known: set py_version (e.g. py312) to the image's")
        wheels = collect(lines, image.python, image.platform, image.versions, log=log,
                         base=own.parent if own else None)
        lines = without_passwords(lines)  # a private index's token was for the download, here
    else:
        goes = backend.traits.bundle_goes
        _refuse_passwords(lines, origin, f"the job's bundle ({goes})" if goes else "the job's bundle")
    return Software(lines, origin, image, wheels, job.launcher)


def _refuse_passwords(lines: list[str], origin: str, where: str) -> None:
    """A container that downloads from a private index needs its password, and a requirements
    line carries it into `where` for anyone who can read it: refused, with the two ways that
    keep it out."""
    for line in lines:
        if without_passwords([line]) != [line]:
            raise reqs.RequirementsError(
                f"{origin}: {without_passwords([line])[0].strip()!r} holds a password, which would be written "
                f"into {where}: write it as a variable (https://user:${{PIP_TOKEN}}@host/simple, pip expands it "
                "from the job's environment: set PIP_TOKEN in additional_args.environment), or set "
                "enable_network_isolation: true so the wheels are fetched on this machine and the password "
                "stays here")
