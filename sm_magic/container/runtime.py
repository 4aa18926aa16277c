"""Helpers a training script may use to survive interruptions: checkpoint, then resume.

Stdlib only, and copied into every job bundle (as `sm_magic/container/runtime.py`), so a script that
imports it runs in a container without sm_magic installed. Resuming takes three lines:

    from sm_magic.runtime import resume, save_checkpoint
    start = resume(accelerator)            # 0, or the step after the last checkpoint (state loaded)
    for epoch in range(start, epochs):
        ...
        save_checkpoint(accelerator, epoch)

A checkpoint is `<checkpoint dir>/ckpt-<step>/`, written by Accelerate's `save_state` into a
temporary directory and renamed into place, so a process killed while saving (a reclaimed spot
instance) leaves the previous checkpoint as the latest. Without Accelerate, pass `save=fn` /
`load=fn` taking the directory to write or read.

A checkpoint is complete only when every host's part of it is there. Once all processes have
saved, each host writes a marker, `sm_magic_checkpoint-<host>.json`, naming the job's hosts and
every file of its part with its size. On SageMaker each host syncs its own directory to one S3
prefix, in no set order, so a reclaim can leave one host's part of the newest checkpoint in S3
and not another's: `resume` then skips it (saying why) and loads the newest complete one.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import time

DEFAULT_DIR = "/opt/ml/checkpoints"  # SageMaker's CheckpointConfig.LocalPath default
MARKER = "sm_magic_checkpoint.json"  # the whole checkpoint's marker of earlier releases, still read
_HOST_MARKER = re.compile(r"^sm_magic_checkpoint-(.+)\.json$")
_NAME = re.compile(r"^ckpt-(\d+)$")
_TMP_PREFIX = ".tmp-ckpt-"

__all__ = ["checkpoint_dir", "checkpoints", "latest_checkpoint", "resume", "save_checkpoint"]


def checkpoint_dir() -> str:
    """Where this job keeps its checkpoints.

    Returns:
        $SM_CHECKPOINT_DIR (the bundle's entry command sets it on every backend: on SageMaker
        the directory synced to `checkpoint_s3_uri`, locally the job's own), else
        /opt/ml/checkpoints where it exists (a SageMaker container), else ./checkpoints as an
        absolute path. The directory may not exist yet.

    Example:
        print("checkpoints go to", checkpoint_dir())
    """
    path = os.environ.get("SM_CHECKPOINT_DIR")
    if not path:
        path = DEFAULT_DIR if os.path.isdir(DEFAULT_DIR) else os.path.abspath("checkpoints")
    return path


def latest_checkpoint(directory: str | None = None):
    """The newest complete checkpoint, without loading it.

    Args:
        directory: where to look (default: `checkpoint_dir()`).

    Returns:
        `(step, path)` of the newest checkpoint every host finished, or None when there is none
        (also when the directory does not exist).

    Example:
        found = latest_checkpoint()
        if found:
            model.load_state_dict(torch.load(os.path.join(found[1], "model.pt")))
    """
    for step, path, missing in checkpoints(directory):
        if missing is None:
            return step, path
    return None


def checkpoints(directory: str | None = None) -> list[tuple[int, str, str | None]]:
    """Every checkpoint in the directory, complete or not, newest first.

    Args:
        directory: where to look (default: `checkpoint_dir()`).

    Returns:
        A list of `(step, path, missing)`: `missing` is None for a complete checkpoint, else what
        it lacks ("algo-2's part is missing", "model.safetensors from algo-1 is incomplete",
        ...). Empty when the directory does not exist.

    Example:
        for step, path, missing in checkpoints():
            print(step, path, missing or "complete")
    """
    directory = directory or checkpoint_dir()
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = [(int(m.group(1)), os.path.join(directory, name)) for name in names if (m := _NAME.match(name))]
    return [(step, path, _missing(path)) for step, path in sorted(found, reverse=True) if os.path.isdir(path)]


def _missing(path: str) -> str | None:
    """What checkpoint `path` lacks: a host's marker, or a file a marker lists; None if nothing."""
    names = os.listdir(path)
    if MARKER in names:
        return None
    parts = {}
    for name in names:
        match = _HOST_MARKER.match(name)
        if match:
            try:
                with open(os.path.join(path, name), encoding="utf-8") as f:
                    parts[match.group(1)] = json.load(f)
            except (OSError, ValueError):
                pass  # half-synced: as if absent
    if not parts:
        return "no host finished it"
    hosts = sorted({h for part in parts.values() for h in part.get("hosts", [])} | set(parts))
    absent = [h for h in hosts if h not in parts]
    if absent:
        return f"{', '.join(absent)}'s part is missing"
    for host, part in sorted(parts.items()):
        for rel, size in sorted(part.get("files", {}).items()):
            try:
                if os.path.getsize(os.path.join(path, rel)) != size:
                    return f"{rel} from {host} is incomplete"
            except OSError:
                return f"{rel} from {host} is missing"
    return None


def resume(accelerator=None, *, load=None, directory: str | None = None) -> int:
    """Load the newest complete checkpoint, if there is one, and say where to start.

    Call it once, after `accelerator.prepare(...)` and before the training loop, in every
    process. A newer checkpoint that is not complete (a host's part missing or half synced) is
    skipped, and a line in the log says so; so does the line saying where training starts.

    Args:
        accelerator: the script's `accelerate.Accelerator`; `accelerator.load_state(path)` loads
            the models, optimizers, schedulers and RNG states prepared by it. None without
            Accelerate.
        load: called as `load(path)` with the checkpoint's directory, to read what the script
            saved itself (with or instead of the Accelerator's state).
        directory: where the checkpoints are (default: `checkpoint_dir()`).

    Returns:
        The step to start from: the saved step plus one, or 0 when there is no complete
        checkpoint (a fresh start).

    Example:
        start = resume(accelerator)   # 0, or the step after the newest checkpoint, its state loaded
        for epoch in range(start, args.epochs): ...
    """
    found = None
    for step, path, missing in checkpoints(directory):
        if missing is None:
            found = step, path
            break
        _say(accelerator, f"checkpoint {step} is incomplete ({missing}): not resuming from it")
    if found is None:
        _say(accelerator, f"no complete checkpoint in {directory or checkpoint_dir()}: starting at step 0")
        return 0
    step, path = found
    if accelerator is not None:
        accelerator.load_state(path)
    if load is not None:
        load(path)
    _say(accelerator, f"resumed from checkpoint {step} ({path}): starting at step {step + 1}")
    return step + 1


def save_checkpoint(accelerator, step: int, *, save=None, keep: int = 2,
                    directory: str | None = None) -> str:
    """Save checkpoint `step` and keep only the newest `keep`.

    With an Accelerator every process must call it, as with `save_state` (it waits for all of
    them). The checkpoint is written into a temporary directory, marked with each host's list of
    files and renamed into place as `<directory>/ckpt-<step>/`, so a process killed while saving
    leaves the previous checkpoint as the newest complete one.

    Args:
        accelerator: the script's `accelerate.Accelerator` (its `save_state` writes the
            checkpoint), or None for a single process that passes `save`.
        step: the epoch or global step number just finished, 0 or more, increasing; `resume`
            returns it plus one. Saving a step that exists replaces it.
        save: called as `save(path)` with the directory to write into, by each host's first
            process (with or instead of the Accelerator's state).
        keep: how many of the newest checkpoints to keep (0: keep them all).
        directory: where to save (default: `checkpoint_dir()`).

    Returns:
        The checkpoint's path, `<directory>/ckpt-<step>`.

    Raises:
        TypeError: neither an Accelerator nor `save` was given.
        ValueError: `step` is negative.

    Example:
        save_checkpoint(accelerator, epoch)
        save_checkpoint(None, step, save=lambda path: torch.save(model.state_dict(), f"{path}/model.pt"))
    """
    if accelerator is None and save is None:
        raise TypeError("save_checkpoint needs an Accelerator, or save=fn that writes into a directory")
    step = int(step)
    if step < 0:
        raise ValueError(f"checkpoint step must be 0 or more, not {step}")
    directory = directory or checkpoint_dir()
    final = os.path.join(directory, f"ckpt-{step}")
    tmp = os.path.join(directory, f"{_TMP_PREFIX}{step}")
    # Each host's first process finishes the checkpoint in its own directory; on SageMaker every
    # host syncs its directory to the same S3 prefix, locally the hosts share one directory.
    finisher = accelerator is None or accelerator.is_local_main_process
    if finisher:
        os.makedirs(directory, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # left by a process killed mid-save
    _barrier(accelerator)
    if accelerator is not None:
        accelerator.save_state(tmp)
    if save is not None and finisher:
        os.makedirs(tmp, exist_ok=True)
        save(tmp)
    _barrier(accelerator)
    if finisher:
        _mark(tmp, step)
    _barrier(accelerator)  # every host's marker is in before a shared directory is renamed
    if finisher:
        _finish(tmp, final)
        _prune(directory, keep)
    _barrier(accelerator)
    return final


def _mark(tmp: str, step: int) -> None:
    """This host's marker: the job's hosts, and each file of this host's part with its size."""
    host = os.environ.get("SM_CURRENT_HOST") or "local"
    try:
        hosts = json.loads(os.environ.get("SM_HOSTS") or "[]") or [host]
    except ValueError:
        hosts = [host]
    files = {}
    for root, _dirs, names in os.walk(tmp):
        for name in names:
            if not name.startswith("sm_magic_checkpoint-"):  # markers, another host's half-written one too
                full = os.path.join(root, name)
                files[os.path.relpath(full, tmp).replace(os.sep, "/")] = os.path.getsize(full)
    marker = os.path.join(tmp, f"sm_magic_checkpoint-{host}.json")
    with open(marker + ".part", "w", encoding="utf-8") as f:
        json.dump({"step": step, "time": time.time(), "host": host, "hosts": hosts, "files": files}, f)
    os.replace(marker + ".part", marker)


def _finish(tmp: str, final: str) -> None:
    """Rename the marked temporary checkpoint into place. Hosts that share the directory race
    here: the first rename wins and moves `tmp` away, so the others find no `tmp`
    (FileNotFoundError) and leave the finished checkpoint alone."""
    try:
        try:
            os.rename(tmp, final)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            # An older checkpoint of the same step (the step numbers went back): replace it.
            old = f"{final}.old-{os.getpid()}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
    except FileNotFoundError:
        pass  # a host sharing this directory finished this checkpoint first


def _prune(directory: str, keep: int) -> None:
    found = sorted((int(m.group(1)), n) for n in os.listdir(directory) if (m := _NAME.match(n)))
    for _, name in found[:-keep] if keep > 0 else []:
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def _barrier(accelerator) -> None:
    if accelerator is not None and getattr(accelerator, "num_processes", 1) > 1:
        accelerator.wait_for_everyone()


def _say(accelerator, text: str) -> None:
    if accelerator is None or accelerator.is_main_process:
        print(f"sm_magic: {text}", flush=True)
