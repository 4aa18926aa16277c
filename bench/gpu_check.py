"""GPU check for model parallel: a real FSDP job (and DeepSpeed where installed) on the local backend.

Needs a machine with at least one NVIDIA GPU and a CUDA build of torch; the CPU test suite cannot
run FSDP (accelerate runs it on GPUs only) and covers everything up to the launch instead
(tests/test_model_parallel.py). Run by hand on a GPU machine:

    .venv/bin/python bench/gpu_check.py            # exit status 0 when every check passed

Each mode trains a small model with the checkpoint helpers, is interrupted once (a simulated spot
interruption) and must resume from its checkpoint to the same final loss as an uninterrupted run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time

SCRIPT = """
import os, time, torch
from accelerate import Accelerator
from sm_magic.runtime import resume, save_checkpoint

torch.manual_seed(0)
accelerator = Accelerator()
model = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.GELU()) for _ in range(8)],
                            torch.nn.Linear(256, 1))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
model, optimizer = accelerator.prepare(model, optimizer)
print(f"mode {accelerator.distributed_type} processes {accelerator.num_processes} "
      f"model {type(model).__name__}", flush=True)
x = torch.randn(512, 256, generator=torch.Generator().manual_seed(1)).to(accelerator.device)
y = x[:, :8].sum(1, keepdim=True).tanh()
start = resume(accelerator)
for epoch in range(start, 12):
    for step in range(20):
        idx = torch.randint(0, 512, (64,), generator=torch.Generator().manual_seed(epoch * 100 + step))
        loss = torch.nn.functional.mse_loss(model(x[idx.to(accelerator.device)]), y[idx.to(accelerator.device)])
        optimizer.zero_grad()
        accelerator.backward(loss)
        optimizer.step()
    with torch.no_grad():
        full = accelerator.reduce(torch.nn.functional.mse_loss(model(x), y).detach(), "mean").item()
    accelerator.print(f"epoch {epoch}: {{'loss': {full!r}}}")
    time.sleep(0.5)
    save_checkpoint(accelerator, epoch)
state = accelerator.get_state_dict(model)
if accelerator.is_main_process:
    torch.save(state, os.path.join(os.environ["SM_MODEL_DIR"], "model.pt"))
accelerator.end_training()
"""


def run(mode: str, interruptions: list[float], **overrides):
    import sm_magic

    t0 = time.monotonic()
    job = sm_magic.launch(SCRIPT, distributed_type=mode, simulate_interruptions=interruptions, wait=False,
                          **overrides)
    try:
        job.wait(timeout=900)
    except sm_magic.JobFailedError as e:
        print(job.logs(tail=60))
        raise SystemExit(f"{mode}: the job failed: {e.reason}")
    return job, time.monotonic() - t0


def check(mode: str, interrupt_at: float, overrides: dict) -> bool:
    plain, plain_s = run(mode, [], **overrides)
    resumed, resumed_s = run(mode, [interrupt_at], **overrides)
    log = plain.logs()
    ok = True
    for name, job in (("uninterrupted", plain), ("interrupted once", resumed)):
        statuses = [t.status for t in job.transitions]
        print(f"  {name}: {job.status}, {len(job.metrics)} epochs, transitions {' > '.join(statuses)}")
    mode_line = next((l for l in log.splitlines() if l.startswith("mode ")), "")
    print(f"  {mode_line}")
    ok &= plain.status == resumed.status == "Completed"
    ok &= mode in mode_line  # accelerate really ran that mode (not a quiet fallback)
    ok &= "Interrupted" in [t.status for t in resumed.transitions]
    ok &= "resumed from checkpoint" in resumed.logs()
    final_plain, final_resumed = plain.metrics["loss"].iloc[-1], resumed.metrics["loss"].iloc[-1]
    ok &= abs(final_plain - final_resumed) <= 1e-6 * max(1.0, abs(final_plain))
    ok &= final_plain < plain.metrics["loss"].iloc[0]
    print(f"  final loss {final_plain:.6g} (uninterrupted) vs {final_resumed:.6g} (resumed); "
          f"wall {plain_s:.1f} s vs {resumed_s:.1f} s")
    print(f"  {mode}: {'PASS' if ok else 'FAIL'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interrupt-at", type=float, default=20.0,
                        help="seconds into the first run at which to interrupt (after the first checkpoints)")
    opts = parser.parse_args()
    os.environ.setdefault("SM_MAGIC_JOBS_DIR", tempfile.mkdtemp(prefix="sm_magic-gpu-jobs-"))
    os.environ.setdefault("SM_MAGIC_REGISTRY", os.path.join(tempfile.mkdtemp(prefix="sm_magic-gpu-"), "r.sqlite3"))

    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU here: this check needs one (FSDP and DeepSpeed run on GPUs only)")
        return 2
    print(f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    ok = True
    print("FSDP (FULL_SHARD, size-based wrap, full state dict):")
    ok &= check("FSDP", opts.interrupt_at, dict(fsdp_auto_wrap_policy="SIZE_BASED_WRAP", fsdp_min_num_params=10000,
                                                fsdp_state_dict_type="FULL_STATE_DICT"))
    if importlib.util.find_spec("deepspeed"):
        print("DeepSpeed (ZeRO-2):")
        ok &= check("DEEPSPEED", opts.interrupt_at, dict(deepspeed_zero_stage=2))
    else:
        print("DeepSpeed: not installed here, not checked")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
