"""Helpers a training script may use to survive interruptions: checkpoint, then resume.

Stdlib only, and copied into every job bundle (as `sm_magic/runtime.py`), so a script that
imports it runs in a container without sm_magic installed. Resuming takes three lines:

    from sm_magic.runtime import resume, save_checkpoint
    start = resume(accelerator)            # 0, or the step after the last checkpoint (state loaded)
    for epoch in range(start, epochs):
        ...
        save_checkpoint(accelerator, epoch)

A checkpoint is `<checkpoint dir>/ckpt-<step>/`, written by Accelerate's `save_state` into a
temporary directory and renamed into place with a marker file last, so a process killed while
saving (a reclaimed spot instance) leaves the previous checkpoint as the latest. Without
Accelerate, pass `save=fn` / `load=fn` taking the directory to write or read.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import time

DEFAULT_DIR = "/opt/ml/checkpoints"  # SageMaker's CheckpointConfig.LocalPath default
MARKER = "sm_magic_checkpoint.json"
_NAME = re.compile(r"^ckpt-(\d+)$")
_TMP_PREFIX = ".tmp-ckpt-"

__all__ = ["checkpoint_dir", "latest_checkpoint", "resume", "save_checkpoint"]


def checkpoint_dir() -> str:
    """Where this job keeps checkpoints: $SM_CHECKPOINT_DIR (set by every sm_magic backend),
    else /opt/ml/checkpoints in a SageMaker container, else ./checkpoints."""
    path = os.environ.get("SM_CHECKPOINT_DIR")
    if not path:
        path = DEFAULT_DIR if os.path.isdir(DEFAULT_DIR) else os.path.abspath("checkpoints")
    return path


def latest_checkpoint(directory: str | None = None):
    """`(step, path)` of the newest complete checkpoint, or None when there is none."""
    directory = directory or checkpoint_dir()
    best = None
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return None
    for name in names:
        match = _NAME.match(name)
        path = os.path.join(directory, name)
        if match and os.path.isfile(os.path.join(path, MARKER)):
            step = int(match.group(1))
            if best is None or step > best[0]:
                best = (step, path)
    return best


def resume(accelerator=None, *, load=None, directory: str | None = None) -> int:
    """Load the newest complete checkpoint, if any, and return the step to start from:
    the saved step plus one, or 0 for a fresh start. `accelerator.load_state(path)` loads it
    (models, optimizers, schedulers and RNG states prepared by that Accelerator), or `load(path)`."""
    found = latest_checkpoint(directory)
    if found is None:
        _say(accelerator, f"no checkpoint in {directory or checkpoint_dir()}: starting at step 0")
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
    """Save checkpoint `step` (an epoch or global step number, increasing) and keep the newest
    `keep`. With an Accelerator every process must call it, as with `save_state`; `accelerator`
    may be None for a single process that passes `save(path)`. Returns the checkpoint's path."""
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
        _finish(tmp, final, step)
        _prune(directory, keep)
    _barrier(accelerator)
    return final


def _finish(tmp: str, final: str, step: int) -> None:
    """Mark the temporary checkpoint complete and rename it into place. Hosts that share the
    directory race here: the first rename wins and moves `tmp` away, so the others find no
    `tmp` (FileNotFoundError) and leave the finished checkpoint alone."""
    try:
        with open(os.path.join(tmp, MARKER), "w", encoding="utf-8") as f:
            json.dump({"step": step, "time": time.time(), "host": os.environ.get("SM_CURRENT_HOST", "")}, f)
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
