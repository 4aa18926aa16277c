"""What spot interruptions and a second host cost a local job, with sm_magic's resume helpers.

    .venv/bin/python bench/resume.py [--every-steps 10] [--interrupt-at 7,6.5] [--runs 3]

Part 1, interruptions. A deterministic Accelerate script (synthetic data, a small MLP with
dropout, Adam; each step padded to --step-ms with a sleep) logs `bench: step N ... t=<time>` per
finished step and checkpoints with `sm_magic.runtime.save_checkpoint`, either at the end of every
epoch or every --every-steps steps (`resume()` returns the global step to start from; the script
turns it into an epoch and a batch within it, so a step checkpoint resumes mid-epoch). Each
policy runs once uninterrupted and once with `simulate_interruptions=--interrupt-at`; a run
without checkpoints is the reference. Per interruption it prints the work redone (training time
between the last complete checkpoint and the kill: the discarded steps plus the partial one), the
restart overhead (kill -> first new step finished: capacity wait, then startup + resume), and the
wall time against the same policy uninterrupted. Every run's final weights and optimizer state
must equal the reference's bitwise; the bench says so and exits 1 if not.

Part 2, two hosts. The same script without checkpoints, DATA_PARALLEL with 2 ranks: two hosts
with one process each (instance_count=2, SM_MAGIC_CPU_PROCESSES=1) against one host with two
processes (instance_count=1, SM_MAGIC_CPU_PROCESSES=2), same global batch and steps, --runs
times each, alternating order. Prints each run's wall time and time to the first finished step,
the medians and their ratio, and whether both layouts trained the same weights.
"""

import argparse
import os
import re
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

SCRIPT = r'''
import time
print(f"bench: script-start t={time.time():.6f}", flush=True)
import argparse
import os

import torch
from accelerate import Accelerator
from sm_magic.runtime import resume, save_checkpoint

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=6)
p.add_argument("--steps-per-epoch", type=int, default=20)
p.add_argument("--batch", type=int, default=64)        # global batch, split across the ranks
p.add_argument("--step-ms", type=float, default=75.0)  # each step padded to this with a sleep
p.add_argument("--ckpt", choices=["none", "epoch", "steps"], default="none")
p.add_argument("--every", type=int, default=10)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()

torch.manual_seed(a.seed)
acc = Accelerator()
main = acc.is_main_process
D, H, spe = 32, 256, a.steps_per_epoch
n = spe * a.batch
g = torch.Generator().manual_seed(a.seed)
X = torch.randn(n, D, generator=g)
Y = torch.tanh(X @ torch.randn(D, 1, generator=g)) + 0.1 * torch.randn(n, 1, generator=g)
model = torch.nn.Sequential(torch.nn.Linear(D, H), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                            torch.nn.Linear(H, H), torch.nn.ReLU(), torch.nn.Linear(H, 1))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
model, opt = acc.prepare(model, opt)

start = resume(acc)  # 0, or the global step after the newest complete checkpoint (state loaded)
if main:
    print(f"bench: ready start={start} t={time.time():.6f}", flush=True)
assert a.batch % acc.num_processes == 0, "the global batch must split evenly across the ranks"
per = a.batch // acc.num_processes
lo = acc.process_index * per
total = a.epochs * spe
perm_epoch, perm = None, None
for step in range(start, total):
    began = time.perf_counter()
    epoch, b = divmod(step, spe)  # global step -> epoch and batch: resuming mid-epoch skips b batches
    if epoch != perm_epoch:       # each epoch's order depends only on (seed, epoch)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(a.seed * 100003 + epoch))
        perm_epoch = epoch
    idx = perm[b * a.batch:(b + 1) * a.batch][lo:lo + per]
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(X[idx]), Y[idx])
    acc.backward(loss)
    opt.step()
    pad = a.step_ms / 1000 - (time.perf_counter() - began)
    if pad > 0:
        time.sleep(pad)
    if main:
        print(f"bench: step {step} loss={loss.item():.6f} t={time.time():.6f}", flush=True)
    done = step + 1
    if done < total and ((a.ckpt == "epoch" and done % spe == 0) or (a.ckpt == "steps" and done % a.every == 0)):
        save_checkpoint(acc, step)
        if main:
            print(f"bench: ckpt {step} t={time.time():.6f}", flush=True)
acc.wait_for_everyone()
if main:
    torch.save({"model": acc.unwrap_model(model).state_dict(), "optimizer": opt.state_dict()},
               os.path.join(os.environ["SM_MODEL_DIR"], "final.pt"))
    print(f"bench: end t={time.time():.6f}", flush=True)
'''

LINE = re.compile(r"bench: (script-start|ready|step|ckpt|end)(?: (\d+))?(?: start=(\d+))?.*? t=([\d.]+)")
INTERRUPTED = "sm_magic: simulated spot interruption"


def parse(lines):
    """The main host's bench lines as attempts: lists of (kind, number, time)."""
    attempts = [[]]
    for line in lines:
        if INTERRUPTED in line:
            attempts.append([])
            continue
        m = LINE.search(line)
        if m:
            kind, num, start, t = m.groups()
            number = int(start) if kind == "ready" else (int(num) if num else None)
            attempts[-1].append((kind, number, float(t)))
    return attempts


def first(attempt, kind):
    return next(((n, t) for k, n, t in attempt if k == kind), None)


def main_host_lines(job):
    lines = job.logs().splitlines()
    if any(l.startswith("algo-") for l in lines):  # several hosts: "algo-N | " prefixes
        lines = [l.split(" | ", 1)[1] for l in lines if l.startswith("algo-1 | ")]
    return lines


def final_state(job, work: Path):
    import torch

    out = work / f"model-{job.name}"
    out.mkdir()
    with tarfile.open(job.model_data) as tar:
        tar.extractall(out, filter="data")
    return torch.load(out / "final.pt", weights_only=True)


def bitwise_equal(a, b) -> bool:
    import torch

    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(bitwise_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(bitwise_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
                and a.contiguous().view(torch.uint8).equal(b.contiguous().view(torch.uint8)))
    return a == b


class Runner:
    def __init__(self, opts, work: Path):
        self.opts, self.work, self.count = opts, work, 0

    def script_args(self, ckpt="none"):
        o = self.opts
        return ["--epochs", str(o.epochs), "--steps-per-epoch", str(o.steps_per_epoch), "--batch", str(o.batch),
                "--step-ms", str(o.step_ms), "--ckpt", ckpt, "--every", str(o.every_steps)]

    def launch(self, label, args, processes=None, **overrides):
        import sm_magic

        self.count += 1
        if processes is not None:
            os.environ["SM_MAGIC_CPU_PROCESSES"] = str(processes)
        t0 = time.time()
        job = sm_magic.launch(SCRIPT, args=args, wait=True, name=f"resume-{os.getpid()}-{self.count}-{label}",
                              jobs_dir=str(self.work / "sm_jobs"), **overrides)
        return job, t0, time.time() - t0


# -- part 1 -----------------------------------------------------------------------------------

def analyse_interruptions(job, kills):
    """Per interruption: work redone, restart overhead; from step lines and transitions."""
    attempts = parse(main_host_lines(job))
    trans = job.transitions
    training = [t for t in trans if t.status == "Training"]
    interrupted = [t for t in trans if t.status == "Interrupted"]
    restarting = [t for t in trans if t.status == "Restarting"]
    rows = []
    for k, seconds in enumerate(kills[:len(interrupted)]):
        this, nxt = attempts[k], attempts[k + 1]
        # The runner kills every process `seconds` after starting the hosts (polling every 50 ms);
        # no line of the attempt can come after the kill.
        kill = max([training[k].start + seconds] + [t for _, _, t in this])
        ready_this, ready_next = first(this, "ready"), first(nxt, "ready")
        resumed = ready_next[0]
        # Last point of the attempt that survived: the checkpoint the next attempt resumed from,
        # if this attempt wrote it; else nothing it did survived (its training began at "ready").
        saved = [t for k_, n, t in this if k_ == "ckpt" and n == resumed - 1]
        kept_from = saved[0] if saved else (ready_this[1] if ready_this else training[k].start)
        discarded = [n for k_, n, t in this if k_ == "step" and n >= resumed]
        step_times = [t for k_, _, t in this if k_ in ("step", "ckpt")]
        first_step = first(nxt, "step")
        rows.append({
            "kill_after": seconds,
            "resumed_at": resumed,
            "discarded_steps": len(discarded),
            "redone_s": kill - kept_from,
            "partial_s": kill - max([kept_from] + step_times),
            "wait_s": restarting[k].end - kill,            # kill -> hosts restarted (reap, capacity wait)
            "startup_s": ready_next[1] - training[k + 1].start,  # restart -> state loaded
            "first_step_s": first_step[1] - ready_next[1] if first_step else float("nan"),
            "overhead_s": (first_step[1] if first_step else ready_next[1]) - kill,
        })
    return rows, attempts


def step_stats(attempts):
    """Median seconds per step and per checkpoint save, from consecutive lines of one attempt."""
    steps, saves = [], []
    for attempt in attempts:
        for (k1, _, t1), (k2, _, t2) in zip(attempt, attempt[1:]):
            if k2 == "step" and k1 == "step":
                steps.append(t2 - t1)
            elif k2 == "ckpt" and k1 == "step":
                saves.append(t2 - t1)
    med = lambda xs: statistics.median(xs) if xs else 0.0  # noqa: E731
    return med(steps), med(saves), len(saves)


def part1(r: Runner, work: Path) -> bool:
    o = r.opts
    kills = [float(x) for x in o.interrupt_at.split(",") if x.strip()]
    policies = [("epoch", f"every epoch ({o.steps_per_epoch} steps)", o.steps_per_epoch),
                ("steps", f"every {o.every_steps} steps", o.every_steps)]
    print(f"== Part 1: interruptions at {', '.join(f'{k:g} s' for k in kills)} into successive runs; "
          f"{o.epochs} epochs x {o.steps_per_epoch} steps, {o.step_ms:g} ms/step ==", flush=True)
    ref_job, _, ref_wall = r.launch("reference", r.script_args("none"))
    ref = final_state(ref_job, work)
    ref_step, _, _ = step_stats(parse(main_host_lines(ref_job)))
    print(f"reference (no checkpoints, uninterrupted): wall {ref_wall:.2f} s, {ref_step * 1000:.0f} ms/step", flush=True)
    ok = True
    summary = []
    for policy, label, interval in policies:
        plain, _, plain_wall = r.launch(f"{policy}-plain", r.script_args(policy))
        hit, _, hit_wall = r.launch(f"{policy}-interrupted", r.script_args(policy), simulate_interruptions=kills)
        rows, attempts = analyse_interruptions(hit, kills)
        step_s, save_s, saves = step_stats(parse(main_host_lines(plain)))
        same_plain = bitwise_equal(final_state(plain, work), ref)
        same_hit = bitwise_equal(final_state(hit, work), ref)
        ok &= same_plain and same_hit and len(rows) == len(kills)
        d = hit.describe()
        print(f"\ncheckpoints {label}:")
        print(f"  uninterrupted: wall {plain_wall:.2f} s ({plain_wall - ref_wall:+.2f} s vs no checkpoints; "
              f"{saves} saves, {save_s * 1000:.0f} ms each), weights == reference: {same_plain}")
        for i, row in enumerate(rows, 1):
            print(f"  interruption {i} ({row['kill_after']:g} s into run {i}): resumed at step {row['resumed_at']}, "
                  f"{row['discarded_steps']} steps discarded, work redone {row['redone_s']:.2f} s "
                  f"(partial step {row['partial_s']:.2f} s); restart overhead {row['overhead_s']:.2f} s = "
                  f"wait {row['wait_s']:.2f} + startup/resume {row['startup_s']:.2f} + first step {row['first_step_s']:.2f}")
        if len(rows) < len(kills):
            print(f"  WARNING: only {len(rows)} of {len(kills)} interruptions happened (the job ended first)")
        lost = hit_wall - plain_wall
        print(f"  interrupted: wall {hit_wall:.2f} s ({lost:+.2f} s vs uninterrupted), "
              f"billable {d.billable_seconds} s of {d.training_seconds} s training, "
              f"{len(attempts)} runs of the hosts; weights == reference: {same_hit}", flush=True)
        summary.append((label, interval, rows, plain_wall, hit_wall, step_s, same_plain and same_hit))
    print("\n| checkpoints | work redone per interruption (each) | restart overhead per interruption | "
          "expected redone, uniform kill | wall uninterrupted -> interrupted | weights bitwise = reference |")
    print("|---|---|---|---|---|---|")
    for label, n, rows, plain_wall, hit_wall, step_s, same in summary:
        redone = statistics.mean(x["redone_s"] for x in rows) if rows else float("nan")
        over = statistics.mean(x["overhead_s"] for x in rows) if rows else float("nan")
        each = ", ".join(f"{x['redone_s']:.2f}" for x in rows)
        print(f"| {label} | {redone:.2f} s ({each}) | {over:.2f} s | {n * step_s / 2:.2f} s "
              f"| {plain_wall:.2f} -> {hit_wall:.2f} s | {'yes' if same else 'NO'} |")
    return ok


# -- part 2 -----------------------------------------------------------------------------------

def part2(r: Runner, work: Path) -> bool:
    o = r.opts
    layouts = {"1 host x 2 processes": dict(processes=2, instance_count=1),
               "2 hosts x 1 process": dict(processes=1, instance_count=2)}
    args = r.script_args("none")
    print(f"\n== Part 2: DATA_PARALLEL, 2 ranks, global batch {o.batch}, {o.epochs * o.steps_per_epoch} steps, "
          f"{o.runs} runs each, alternating ==", flush=True)
    results = {k: [] for k in layouts}
    states = {}
    for i in range(o.runs):
        order = list(layouts) if i % 2 == 0 else list(layouts)[::-1]
        for label in order:
            job, t0, wall = r.launch("2h" if "2 hosts" in label else "1h", args, distributed_type="DATA_PARALLEL",
                                     **layouts[label])
            attempt = parse(main_host_lines(job))[0]
            ttfs = first(attempt, "step")[1] - t0
            start = first(attempt, "script-start")[1] - t0
            step_s, _, _ = step_stats([attempt])
            results[label].append((wall, ttfs, start, step_s))
            states.setdefault(label, final_state(job, work))
            print(f"run {i + 1} {label:22s} wall {wall:6.2f} s   first step done after {ttfs:5.2f} s   "
                  f"(script started {start:4.2f} s, {step_s * 1000:.0f} ms/step)", flush=True)
    os.environ.pop("SM_MAGIC_CPU_PROCESSES", None)
    med = {k: [statistics.median(x[j] for x in v) for j in range(4)] for k, v in results.items()}
    one, two = med["1 host x 2 processes"], med["2 hosts x 1 process"]
    same = bitwise_equal(states["1 host x 2 processes"], states["2 hosts x 1 process"])
    print("\n| | median wall | median time to first step done | median script start | median step |")
    print("|---|---|---|---|---|")
    for label, m in med.items():
        print(f"| {label} | {m[0]:.2f} s | {m[1]:.2f} s | {m[2]:.2f} s | {m[3] * 1000:.0f} ms |")
    print(f"| ratio 2 hosts / 1 host | **{two[0] / one[0]:.3f}** | {two[1] - one[1]:+.2f} s | "
          f"{two[2] - one[2]:+.2f} s | {(two[3] - one[3]) * 1000:+.0f} ms |")
    print(f"\nboth layouts trained bitwise-identical weights: {same}")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every-steps", type=int, default=10, help="step checkpoint interval")
    parser.add_argument("--interrupt-at", default="7,6.5",
                        help="seconds into each successive run of the hosts at which to kill it (comma-separated)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps-per-epoch", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64, help="global batch")
    parser.add_argument("--step-ms", type=float, default=75.0, help="each step is padded to this with a sleep")
    parser.add_argument("--runs", type=int, default=3, help="part 2: runs of each layout")
    parser.add_argument("--part", choices=["1", "2", "all"], default="all")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sm_magic-bench-") as tmp:
        work = Path(tmp)
        # Before sm_magic is imported: nothing of the bench lands in the repo or the user's registry.
        os.environ["SM_MAGIC_JOBS_DIR"] = str(work / "sm_jobs")
        os.environ["SM_MAGIC_REGISTRY"] = str(work / "registry.sqlite3")
        os.environ["HF_HOME"] = str(work / "hf")  # no user accelerate config
        r = Runner(opts, work)
        ok = True
        if opts.part in ("1", "all"):
            ok &= part1(r, work)
        if opts.part in ("2", "all"):
            ok &= part2(r, work)
    if not ok:
        print("\nFAILED: a run's final state differs from the reference, or an interruption did not happen")
        sys.exit(1)


if __name__ == "__main__":
    main()
