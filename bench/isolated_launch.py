"""Size and launch time of a network-isolated bundle for the quickstart cell.

Launches the quickstart notebook's training cell on the SageMaker backend against a moto server on
127.0.0.1 (no AWS), three times: without network isolation, with it and an empty wheel cache (the
wheels are resolved and downloaded from PyPI), and with it again (the cache has them). Prints the
wall time of each `sm_magic.launch` and the size of the code channel uploaded to S3.

    .venv/bin/python bench/isolated_launch.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def quickstart_cell() -> str:
    cells = json.loads((ROOT / "example_notebooks" / "quickstart.ipynb").read_text())["cells"]
    source = next("".join(c["source"]) for c in cells if "".join(c["source"]).startswith("%%sagemaker_train"))
    return source.split("\n", 1)[1]


def code_channel_size(aws, name: str) -> tuple[int, int, int]:
    """(bytes, files, wheel bytes) of the code channel a job's request names."""
    request = aws.client("sagemaker").describe_training_job(TrainingJobName=name)
    uri = next(c for c in request["InputDataConfig"] if c["ChannelName"] == "code")["DataSource"]["S3DataSource"]["S3Uri"]
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    objects = [o for page in aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
               for o in page.get("Contents", [])]
    wheels = sum(o["Size"] for o in objects if o["Key"].endswith(".whl"))
    return sum(o["Size"] for o in objects), len(objects), wheels


def main() -> None:
    from helpers.aws_moto import ROLE_NAME, MotoAWS, bench_user

    aws = MotoAWS()
    bench_user(aws)
    import sm_magic

    source = quickstart_cell()
    runs = [("no isolation", {}), ("isolated, empty cache", {"enable_network_isolation": True}),
            ("isolated, cached", {"enable_network_isolation": True})]
    print(f"{'launch':24} {'seconds':>8} {'code channel':>14} {'files':>6} {'wheels':>10}")
    for i, (label, extra) in enumerate(runs):
        start = time.perf_counter()
        job = sm_magic.launch(source, backend="sagemaker", instance_type="ml.g5.xlarge", iam_role_name=ROLE_NAME,
                              additional_args=extra, name=f"bench-isolated-{os.getpid()}-{i}")
        seconds = time.perf_counter() - start
        size, files, wheels = code_channel_size(aws, job.name)
        print(f"{label:24} {seconds:8.2f} {size / 1e6:11.2f} MB {files:6d} {wheels / 1e6:7.2f} MB")
    aws.stop()


if __name__ == "__main__":
    main()
