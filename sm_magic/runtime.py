"""`from sm_magic.runtime import resume, save_checkpoint`: the checkpoint helpers a training script
imports (container/runtime.py has them and their documentation). The job bundle carries this
module and sm_magic/container/ beside the script, so the name works the same in a training
container where sm_magic is not installed."""

from .container.runtime import checkpoint_dir, checkpoints, latest_checkpoint, resume, save_checkpoint

__all__ = ["checkpoint_dir", "checkpoints", "latest_checkpoint", "resume", "save_checkpoint"]
