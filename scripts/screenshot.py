"""Screenshot of a running `%%sagemaker_train` cell in JupyterLab, for the docs.

Starts JupyterLab in a throwaway directory (isolated registry, jobs dir and HOME; the same helpers
the browser tests use, tests/helpers/lab.py), runs a demo notebook with a local job that reports
metrics for ten epochs, waits until the live progress widget shows its bar past the middle with
the table and the plot, and saves an element screenshot of that cell's output.

    .venv/bin/python scripts/screenshot.py [--out docs/images/progress.png] [--full PAGE.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers import lab  # noqa: E402

DEMO_JOB = """\
%%sagemaker_train --name quickstart-demo -o job -- --epochs 10 --lr 0.05
import argparse, math, os, time
parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--lr", type=float, default=0.1)
args = parser.parse_args()
for epoch in range(args.epochs):
    time.sleep(1.5)  # a training epoch
    acc = 0.95 - 0.4 * math.exp(-(epoch + 1) * args.lr * 12)
    f1 = acc - 0.02 + 0.01 * (epoch % 2)
    print(f"epoch {epoch}: {{'accuracy': {acc:.4f}, 'f1': {f1:.4f}}}", flush=True)
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as f:
    f.write("weights")
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "progress.png")
    ap.add_argument("--full", type=Path, help="also save a screenshot of the whole page here")
    ap.add_argument("--timeout", type=int, default=120, help="seconds to wait for the job (default 120)")
    args = ap.parse_args(argv)

    try:
        lab.require_chromium()
    except lab.BrowserMissing as e:
        print(e, file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sm-magic-screenshot-") as tmp:
        # Jobs in ./sm_jobs beside the notebook, as a user's would be by default.
        server = lab.start_lab(Path(tmp), jobs_dir=Path(tmp) / "sm_jobs")
        try:
            with sync_playwright() as p:
                browser = lab.launch_browser(p)
                try:
                    page = lab.new_page(browser, width=1280, height=1100)
                    path = lab.write_notebook(server.root, "demo.ipynb", ["%load_ext sm_magic", DEMO_JOB])
                    lab.run_notebook(page, server, path)
                    output = lab.cell_output(page, 1)
                    live = output.locator(".sm-magic-progress")
                    # Mid-run: six epochs of ten done, the plot drawn from them.
                    lab.expect_text(live.locator(".sm-magic-eta"), "epoch 6/10", timeout=args.timeout * 1000)
                    live.locator("img.sm-magic-plot").wait_for(timeout=args.timeout * 1000)
                    live.locator("img.sm-magic-plot").evaluate(
                        "(img) => img.complete ? null : new Promise(r => img.onload = r)")
                    page.mouse.move(0, 0)  # no hover highlight on the cell
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    live.screenshot(path=str(args.out))
                    if args.full:
                        args.full.parent.mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(args.full), full_page=True)
                finally:
                    browser.close()
        finally:
            server.stop()
    print(f"{args.out} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
