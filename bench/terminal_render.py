"""CPU of rendering a log as a terminal shows it (sm_magic.metrics.terminal), at the sizes a job reaches.

    .venv/bin/python bench/terminal_render.py

A job's buffer holds up to 200,000 raw lines (job.MAX_LOG_LINES). Measured, in this process's
CPU time (best of 3):
* `render` of 200,000 plain lines, and of 200,000 lines of a Hugging Face Trainer log
  (tests/data/logs/hf_trainer.log repeated: "\\r" redraws, nested bars with ESC[A): what
  `job.logs()` costs once;
* `render_tail(buffer, 20)` on those buffers: what each snapshot of a running job costs;
* one line of 10,000 and of 20,000 redraws of a tqdm bar (about 1 MiB: what the local backend
  delivers as one over-long line), with and without an escape in it (the two paths): linear, not
  quadratic, in the redraws;
* `LogStream` fed the Trainer buffer 100 lines at a time (`sm-magic wait`).
"""

import time
from collections import deque
from pathlib import Path

from sm_magic.metrics.terminal import LogStream, render, render_tail

LINES = 200_000
HF_LOG = Path(__file__).resolve().parent.parent / "tests" / "data" / "logs" / "hf_trainer.log"


def cpu(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        fn()
        best = min(best, time.process_time() - started)
    return best


def hf_buffer() -> deque[str]:
    lines = HF_LOG.read_bytes().decode("utf-8").split("\n")[:-1]
    out: deque[str] = deque(maxlen=LINES)
    while len(out) < LINES:
        out.extend(lines)
    return out


def bar_line(redraws: int, escape: bool) -> str:
    line = "".join(f"\rEpoch 0: {i * 100 // redraws:3d}%|{'█' * (i * 10 // redraws):<10}| {i}/{redraws} "
                   f"[00:{i % 60:02d}<00:10, 98.76it/s, loss={1 / i:.4f}, v_num=0]" for i in range(1, redraws + 1))
    return line + ("\x1b[K" if escape else "")


def main() -> None:
    plain: deque[str] = deque((f"step {i}: {{'loss': {1 / (i + 1):.5f}, 'lr': 0.001}}" for i in range(LINES)),
                              maxlen=LINES)
    hf = hf_buffer()
    print(f"render, {LINES:,} plain lines:             {cpu(lambda: render(plain)) * 1000:8.1f} ms")
    print(f"render, {LINES:,} Trainer log lines:       {cpu(lambda: render(hf)) * 1000:8.1f} ms")
    print(f"render_tail(20), {LINES:,} plain lines:    {cpu(lambda: render_tail(plain, 20)) * 1e6:8.1f} us")
    print(f"render_tail(20), {LINES:,} Trainer lines:  {cpu(lambda: render_tail(hf, 20)) * 1e6:8.1f} us")
    for redraws in (10_000, 20_000):
        for escape in (False, True):
            line = bar_line(redraws, escape)
            took = cpu(lambda: render([line]))
            print(f"one line of {redraws:,} redraws ({len(line) / 2**20:.2f} MiB{', an escape' if escape else ''}):"
                  f" {took * 1000:6.1f} ms")

    def stream() -> None:
        s = LogStream()
        buf = list(hf)
        for i in range(0, len(buf), 100):
            s.feed(buf[i:i + 100])
        s.flush()
    print(f"LogStream, {LINES:,} Trainer lines by 100:  {cpu(stream) * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
