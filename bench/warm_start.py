"""Warm starts: the time from a container's start to the script's first line, on one warm host.

Launches a small Accelerate script on the SageMaker backend against a moto server on 127.0.0.1
(no AWS), ml.g5.xlarge with the Hugging Face PyTorch 2.9.0 / Python 3.12 image, then plays the
platform's part in the container harness (tests/helpers/container.py: the request's own
entrypoint, the SDK's drivers, the image's Python with its torch and without accelerate, the
warm pool's persistent cache directory kept per host between runs):

- without a warm pool, twice: the SDK's driver installs requirements.txt into the image each time;
- with `keep_alive=10` (a warm pool), twice on the same host: the first run installs into the
  pool's cache, the second finds it there.

Prints, for each run, the seconds from the container's start to the script's first line (the
script prints time.time() first thing) and what the log says of the install. Needs root and
`unshare` (as the container tests do); pip installs from the package index pip is set up for.

    .venv/bin/python bench/warm_start.py [--network-isolation]
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

SCRIPT = """import time; print(f"first line at {time.time():.3f}", flush=True)
import torch
from accelerate import Accelerator

accelerator = Accelerator()
model = torch.nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model, optimizer = accelerator.prepare(model, optimizer)
X = torch.linspace(-1, 1, 64).reshape(16, 4)
for epoch in range(2):
    loss = torch.nn.functional.mse_loss(model(X), X.sum(1, keepdim=True))
    optimizer.zero_grad()
    accelerator.backward(loss)
    optimizer.step()
    accelerator.print(f"epoch {epoch}: {{'loss': {loss.item():.4f}}}")
"""
IMAGE = dict(pytorch_version="2.9.0", transformers_version="5.3.0", py_version="py312")


def first_line_seconds(host) -> float:
    match = re.search(r"^first line at (\d+\.\d+)$", host.log(), re.M)
    if host.returncode != 0 or match is None:
        raise SystemExit(f"{host.name} failed (exit status {host.returncode}); its log ends:\n{host.tail()}")
    return float(match[1]) - host.started_at


def install_note(log: str) -> str:
    if "reused, nothing installed" in log:
        return "warm pool cache: reused, nothing installed"
    took = re.search(r"warm pool cache: installed in ([\d.]+) s", log)
    if took:
        return f"installed into the warm pool cache ({took[1]} s)"
    return "the SDK's driver installed requirements.txt" if "Installing requirements" in log else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network-isolation", action="store_true", help="wheels carried in the bundle, no network")
    opts = parser.parse_args()
    logging.disable(logging.ERROR)  # moto's traceback for the IAM call it lacks (the SDK's role check) is noise here
    from helpers.aws_moto import ROLE_NAME, bench_user
    from helpers.container import CapturingMoto, Platform, image_for, mount_point

    aws = CapturingMoto()
    work = bench_user(aws)
    import sm_magic

    extra = {"enable_network_isolation": True} if opts.network_isolation else {}
    print(f"{'job':34} {'run':>3} {'start to first line':>20}  install")
    with mount_point():
        for label, keep_alive in (("no warm pool", None), ("warm pool (--keep-alive 10)", 10)):
            sm_magic.launch(SCRIPT, backend="sagemaker", instance_type="ml.g5.xlarge", iam_role_name=ROLE_NAME,
                            keep_alive=keep_alive, additional_args=extra, **IMAGE)
            request = aws.requests[-1]
            platform = Platform(aws, request, work / f"platform-{len(aws.requests)}", image_for(request), gpus=1)
            try:
                for run in (1, 2):
                    [host] = platform.run(timeout=900)
                    print(f"{label:34} {run:3d} {first_line_seconds(host):18.1f} s  {install_note(host.log())}",
                          flush=True)
            finally:
                platform.close()
    aws.stop()


if __name__ == "__main__":
    main()
