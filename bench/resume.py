"""What spot interruptions and a second host cost a local job, with sm_magic's resume helpers.

    .venv/bin/python bench/resume.py [--every-steps 10] [--interrupt-at auto|S1,S2,...] [--runs 3]

Part 1, interruptions. A deterministic Accelerate script (synthetic data, a small MLP with
dropout, Adam; each step padded to --step-ms with a sleep) logs `bench: step N ... t=<time>` per
finished step and checkpoints with `sm_magic.runtime.save_checkpoint`, either at the end of every
epoch or every --every-steps steps (`resume()` returns the global step to start from; the script
turns it into an epoch and a batch within it, so a step checkpoint resumes mid-epoch). Each
policy runs once uninterrupted and once with `simulate_interruptions=--interrupt-at`; a run
without checkpoints is the reference. By default the kills come 3.4 s, then 4.1 s, of training
into successive runs of the hosts, after the median startup of the uninterrupted runs (so that
they land past the first checkpoint). A kill that lands during startup (a busier machine) measures no
redone work: that run is repeated with every kill 2 s later, twice at most, then flagged.
Per interruption it prints the work redone (training time between the last complete checkpoint
and the kill: the discarded steps plus the partial one), the restart overhead (kill -> first new
step finished: capacity wait, then startup + resume, then the step), and the wall time against
the same policy uninterrupted. Every run's final weights and optimizer state must equal the
reference's bitwise; the bench says so and exits 1 if not.

Part 2, two hosts. The same script without checkpoints, DATA_PARALLEL with 2 ranks: two hosts
with one process each (instance_count=2, SM_MAGIC_CPU_PROCESSES=1) against one host with two
processes (instance_count=1, SM_MAGIC_CPU_PROCESSES=2), same global batch and steps, --runs
times each, alternating order. Prints each run's wall time and time to the first finished step,
the medians and their ratio, and whether both layouts trained the same weights.
"""

import argparse
import math
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
if main:
    print(f"bench: prepared t={time.time():.6f}", flush=True)
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

LINE = re.compile(r"bench: (script-start|prepared|ready|step|ckpt|end)(?: (\d+))?(?: start=(\d+))?.*? t=([\d.]+)")
INTERRUPTED = "sm_magic: simulated spot interruption"
AUTO_TRAINING_OFFSETS = (3.4, 4.1)  # --interrupt-at auto: seconds of training into each run
RETRIES, RETRY_SHIFT = 2, 2.0  # a run whose kill landed during startup is rerun with later kills


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
                and a.reshape(-1).view(torch.uint8).equal(b.reshape(-1).view(torch.uint8)))
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
        # The step the job went on from: the next attempt that got as far as loading says.
        resumed = next((r[0] for a in attempts[k + 1:] if (r := first(a, "ready"))), None)
        # It must be the newest checkpoint written before the kill (or one being written at the kill).
        done = [n for a in attempts[:k + 1] for k_, n, t in a if k_ == "ckpt"]
        newest = max(done) + 1 if done else 0
        last_step = max([n for k_, n, _ in this if k_ == "step"], default=-1)
        newest_ok = resumed is None or resumed in (newest, last_step + 1)
        row = {"kill_after": seconds, "resumed_at": resumed, "newest_ok": newest_ok, "note": "",
               "discarded_steps": 0, "redone_s": 0.0, "partial_s": 0.0, "wait_s": restarting[k].end - kill}
        if ready_this is None:
            row["note"] = "killed before training resumed"
        elif resumed is None:
            row["note"] = "no later run got as far as resuming"
        else:
            # The last point of the attempt that survived: the checkpoint the job resumed from,
            # if this attempt wrote it (its line, or the step it followed when the kill came between
            # the save and its line); else nothing it computed survived (it began at "ready").
            saved = ([t for k_, n, t in this if k_ == "ckpt" and n == resumed - 1]
                     or [t for k_, n, t in this if k_ == "step" and n == resumed - 1])
            kept_from = saved[0] if saved else ready_this[1]
            row["discarded_steps"] = len([n for k_, n, t in this if k_ == "step" and n >= resumed])
            row["redone_s"] = kill - kept_from
            row["partial_s"] = kill - max([kept_from] + [t for k_, _, t in this if k_ in ("step", "ckpt")])
        first_step = first(nxt, "step")
        if ready_next and first_step:
            row["startup_s"] = ready_next[1] - training[k + 1].start  # hosts restarted -> state loaded
            row["load_s"] = ready_next[1] - first(nxt, "prepared")[1]  # of which resume(): find + load_state
            row["first_step_s"] = first_step[1] - ready_next[1]
            row["overhead_s"] = first_step[1] - kill
        else:
            row["note"] += ("; " if row["note"] else "") + "next run killed before its first step"
            row["startup_s"] = row["load_s"] = row["first_step_s"] = row["overhead_s"] = float("nan")
        rows.append(row)
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


def startup_seconds(job) -> float:
    """Hosts started -> the script ready to train (its first run)."""
    began = next(t for t in job.transitions if t.status == "Training").start
    return first(parse(main_host_lines(job))[0], "ready")[1] - began


def part1(r: Runner, work: Path) -> bool:
    o = r.opts
    policies = [("epoch", f"every epoch ({o.steps_per_epoch} steps)", o.steps_per_epoch),
                ("steps", f"every {o.every_steps} steps", o.every_steps)]
    print(f"== Part 1: interruptions; {o.epochs} epochs x {o.steps_per_epoch} steps, "
          f"{o.step_ms:g} ms/step, global batch {o.batch}, 1 process ==", flush=True)
    ref_job, _, ref_wall = r.launch("reference", r.script_args("none"))
    ref = final_state(ref_job, work)
    ref_step, _, _ = step_stats(parse(main_host_lines(ref_job)))
    plains = {policy: r.launch(f"{policy}-plain", r.script_args(policy)) for policy, _, _ in policies}
    startups = [startup_seconds(job) for job in [ref_job] + [job for job, _, _ in plains.values()]]
    startup = statistics.median(startups)
    ref_attempt = parse(main_host_lines(ref_job))[0]
    fresh = first(ref_attempt, "ready")[1] - first(ref_attempt, "prepared")[1]
    print(f"reference (no checkpoints, uninterrupted): wall {ref_wall:.2f} s, {ref_step * 1000:.1f} ms/step; "
          f"hosts started -> training began {', '.join(f'{x:.2f}' for x in startups)} s in the 3 uninterrupted runs "
          f"(resume() finding no checkpoint: {fresh:.3f} s)", flush=True)
    if o.interrupt_at == "auto":
        # Kill each run this far into its training, after the median startup.
        kills = [round(startup + x, 1) for x in AUTO_TRAINING_OFFSETS]
    else:
        kills = [float(x) for x in o.interrupt_at.split(",") if x.strip()]
    print(f"interruptions at {', '.join(f'{k:g} s' for k in kills)} into successive runs of the hosts", flush=True)
    ok = landed_all = True
    summary = []
    for policy, label, interval in policies:
        plain, _, plain_wall = plains[policy]
        for retry in range(RETRIES + 1):
            tried = [k + RETRY_SHIFT * retry for k in kills]
            hit, _, hit_wall = r.launch(f"{policy}-interrupted-{retry}", r.script_args(policy),
                                        simulate_interruptions=tried)
            rows, attempts = analyse_interruptions(hit, tried)
            if retry == RETRIES or not any(x["note"].startswith("killed before") for x in rows):
                break
            print(f"  ({label}: a kill landed during startup, before training resumed; "
                  f"rerunning with every kill {RETRY_SHIFT * (retry + 1):g} s later)", flush=True)
        step_s, save_s, saves = step_stats(parse(main_host_lines(plain)))
        same_plain = bitwise_equal(final_state(plain, work), ref)
        same_hit = bitwise_equal(final_state(hit, work), ref)
        ok &= same_plain and same_hit and all(x["newest_ok"] for x in rows)
        landed_all &= len(rows) == len(kills)
        d = hit.describe()
        print(f"\ncheckpoints {label}:")
        print(f"  uninterrupted: wall {plain_wall:.2f} s ({plain_wall - ref_wall:+.2f} s vs no checkpoints; "
              f"{saves} saves, {save_s * 1000:.0f} ms each), weights == reference: {same_plain}")
        for i, row in enumerate(rows, 1):
            newest = "" if row["newest_ok"] else " (NOT from the newest checkpoint before the kill)"
            print(f"  interruption {i} ({row['kill_after']:g} s into run {i}): resumed at step "
                  f"{row['resumed_at']}{newest}, {row['discarded_steps']} steps discarded, "
                  f"work redone {row['redone_s']:.2f} s "
                  f"(partial step {row['partial_s']:.2f} s); restart overhead {row['overhead_s']:.2f} s = "
                  f"wait {row['wait_s']:.2f} + startup/resume {row['startup_s']:.2f} "
                  f"(of which resume() {row['load_s']:.2f}) "
                  f"+ first step {row['first_step_s']:.2f}" + (f"  [{row['note']}]" if row["note"] else ""))
            landed_all &= not row["note"]  # a kill that landed in startup measured no redone work
        if len(rows) < len(kills):
            print(f"  WARNING: only {len(rows)} of {len(kills)} interruptions happened (the job ended first)")
        lost = hit_wall - plain_wall
        accounted = sum(x["redone_s"] + x["overhead_s"] for x in rows)
        print(f"  interrupted: wall {hit_wall:.2f} s ({lost:+.2f} s vs uninterrupted; redone work + restart "
              f"overheads above: {accounted:.2f} s), "
              f"billable {d.billable_seconds} s of {d.training_seconds} s training, "
              f"{len(attempts)} runs of the hosts; weights == reference: {same_hit}", flush=True)
        summary.append((label, interval, rows, plain_wall, hit_wall, step_s, save_s, same_plain and same_hit))
    print("\n| checkpoints | work redone per interruption (each) | expected, kill at a random time | "
          "restart overhead per interruption (wait + startup/resume + first step) | "
          "wall uninterrupted -> interrupted | final state bitwise = reference |")
    print("|---|---|---|---|---|---|")
    for label, n, rows, plain_wall, hit_wall, step_s, save_s, same in summary:
        landed = [x for x in rows if not x["note"].startswith(("killed before", "no later run"))]

        def mean(key, rows=rows):
            values = [x[key] for x in rows if math.isfinite(x[key])]
            return statistics.mean(values) if values else math.nan
        each = ", ".join(f"{x['redone_s']:.2f}" for x in landed)
        if len(landed) < len(rows):
            each += f"; {len(rows) - len(landed)} more killed during startup"
        overhead = (f"{mean('overhead_s'):.2f} s ({mean('wait_s'):.2f} + {mean('startup_s'):.2f} "
                    f"+ {mean('first_step_s'):.2f}; resume() {mean('load_s'):.2f})")
        print(f"| {label} | {mean('redone_s', landed):.2f} s ({each}) | {(n * step_s + save_s) / 2:.2f} s | "
              f"{overhead} | {plain_wall:.2f} -> {hit_wall:.2f} s | {'yes' if same else 'NO'} |")
    if not landed_all:
        print("\nWARNING: not every interruption landed in training (see above): the machine is busier than when "
              "the reference run measured its startup; rerun, or give later --interrupt-at seconds")
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
            tail = t0 + wall - first(attempt, "end")[1]
            results[label].append((wall, ttfs, start, step_s, tail))
            states.setdefault(label, final_state(job, work))
            print(f"run {i + 1} {label:22s} wall {wall:6.2f} s   first step done after {ttfs:5.2f} s   "
                  f"(script started {start:4.2f} s, {step_s * 1000:.1f} ms/step, script end -> job done {tail:4.2f} s)",
                  flush=True)
    os.environ.pop("SM_MAGIC_CPU_PROCESSES", None)
    med = {k: [statistics.median(x[j] for x in v) for j in range(5)] for k, v in results.items()}
    one, two = med["1 host x 2 processes"], med["2 hosts x 1 process"]
    same = bitwise_equal(states["1 host x 2 processes"], states["2 hosts x 1 process"])
    print("\n| medians | wall | time to first step done | script started | per step | script end -> job done |")
    print("|---|---|---|---|---|---|")
    for label, m in med.items():
        print(f"| {label} | {m[0]:.2f} s | {m[1]:.2f} s | {m[2]:.2f} s | {m[3] * 1000:.1f} ms | {m[4]:.2f} s |")
    print(f"| 2 hosts vs 1 host | **x{two[0] / one[0]:.3f}** ({two[0] - one[0]:+.2f} s) | {two[1] - one[1]:+.2f} s | "
          f"{two[2] - one[2]:+.2f} s | {(two[3] - one[3]) * 1000:+.1f} ms | {two[4] - one[4]:+.2f} s |")
    print(f"\nboth layouts trained bitwise-identical weights: {same}")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every-steps", type=int, default=10, help="step checkpoint interval")
    parser.add_argument("--interrupt-at", default="auto",
                        help="seconds into each successive run of the hosts at which to kill it, comma-separated; "
                             "auto: the uninterrupted runs' median startup plus "
                             + ", ".join(map(str, AUTO_TRAINING_OFFSETS)) + " s")
    parser.add_argument("--epochs", type=int, default=8)
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
        print("load average at start: %.2f %.2f %.2f, %d CPUs" % (*os.getloadavg(), os.cpu_count()), flush=True)
        ok = True
        if opts.part in ("1", "all"):
            ok &= part1(r, work)
        if opts.part in ("2", "all"):
            ok &= part2(r, work)
        print("\nload average at end: %.2f %.2f %.2f" % os.getloadavg())
    if not ok:
        print("\nFAILED: a final state differs from the reference's, or a run did not resume from the newest "
              "checkpoint (see above)")
        sys.exit(1)


if __name__ == "__main__":
    main()
