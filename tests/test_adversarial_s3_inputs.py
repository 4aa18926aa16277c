"""Input channels as an adversary or a careless user gives them (issue 23, findings 1, 3 and the
S3/input parts of 7): S3 keys that climb out of the channel, are both a file and a prefix or have
a name no file system takes; a job that writes into its channel while the next job with the same
URI reads it; processes that fill the download cache at once; two local input sets with the same
bytes in other files; and links in a local input directory that point at secrets.

Against a moto S3 server on 127.0.0.1, with real local jobs and real processes; no mocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import sm_magic
from sm_magic.backends import BackendError
from sm_magic.jobs.registry import Registry
from sm_magic.plan.planner import LaunchError

from helpers.aws_moto import BUCKET, ROLE_NAME
from helpers.jobscripts import EPOCHS_SCRIPT, wait_until

pytestmark = pytest.mark.jobs

SAGEMAKER = dict(backend="sagemaker", instance_type="ml.g5.xlarge", iam_role_name=ROLE_NAME)

# Lists the channel as the job sees it (every file, its bytes) and says how many files it read.
LISTER = textwrap.dedent("""
    import json, os
    root = os.environ['SM_CHANNEL_TRAIN']
    seen = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            seen[os.path.relpath(p, root)] = open(p, 'rb').read().decode('utf-8', 'replace')
    with open(os.path.join(os.environ['SM_MODEL_DIR'], 'seen.json'), 'w') as f:
        json.dump(seen, f)
    print(f'epoch 0: files={len(seen)}')
""")


class Prefix:
    """A prefix of the session's bucket that only this test writes under (the moto server is
    shared by the session): `put("rows.csv", b"...")` makes `<prefix>/rows.csv`."""

    def __init__(self, client):
        self.client, self.prefix = client, f"{uuid.uuid4().hex[:12]}/data"
        self.uri = f"s3://{BUCKET}/{self.prefix}"

    def put(self, rel: str, body: bytes) -> str:
        key = f"{self.prefix}/{rel}"
        self.client.put_object(Bucket=BUCKET, Key=key, Body=body)
        return key

    def get(self, rel: str) -> bytes:
        return self.client.get_object(Bucket=BUCKET, Key=f"{self.prefix}/{rel}")["Body"].read()


@pytest.fixture
def s3(aws, sm_env, monkeypatch) -> Prefix:
    monkeypatch.setenv("SM_MAGIC_CACHE", str(sm_env / "cache"))
    return Prefix(aws.client("s3"))


def seen_by(job) -> dict[str, str]:
    """What the job found in its channel: relative path -> text."""
    return json.loads((sm_env_jobs() / job.name / "opt_ml/model/seen.json").read_text())


def sm_env_jobs() -> Path:
    return Path(os.environ["SM_MAGIC_JOBS_DIR"])


def nothing_launched(sm_env) -> None:
    jobs = sm_env / "sm_jobs"
    assert not jobs.exists() or not any(jobs.iterdir())
    assert Registry().list() == []


def cached_files(sm_env) -> list[Path]:
    root = sm_env / "cache" / "s3"
    return [p for p in root.rglob("*") if p.is_file() and p.suffix not in (".json", ".lock")] if root.exists() else []


# --- finding 1: a key resolves inside the channel or is refused ----------------------------------

@pytest.mark.parametrize("shape", ["parent segments to an absolute path", "an empty segment", "a dot segment",
                                   "a parent segment inside"])
def test_a_key_that_does_not_name_a_file_inside_the_channel_is_refused_and_nothing_is_written(s3, sm_env, shape):
    outside = sm_env / "outside" / "pwned.txt"
    rel = {"parent segments to an absolute path": "../" * 40 + str(outside).lstrip("/"),
           "an empty segment": "sub//pwned.txt",
           "a dot segment": "./pwned.txt",
           "a parent segment inside": "sub/../../pwned.txt"}[shape]
    s3.put("rows.csv", b"1,2\n")
    key = s3.put(rel, b"written by whoever can write to the bucket\n")
    with pytest.raises(BackendError) as refused:
        sm_magic.launch(LISTER, inputs=[f"train={s3.uri}"])
    message = str(refused.value)
    assert "\n" not in message and repr(key) in message and "input channel train" in message
    assert not outside.exists() and not (sm_env / "outside").exists()
    assert not (sm_env / "pwned.txt").exists() and cached_files(sm_env) == []
    nothing_launched(sm_env)


def test_a_key_that_is_both_a_file_and_a_prefix_is_one_clear_error(s3, sm_env):
    s3.put("a", b"a file\n")
    s3.put("a/b", b"a file under a\n")
    with pytest.raises(BackendError, match=r"input channel train: .*'[0-9a-f]+/data/a' and '[0-9a-f]+/data/a/b'.* "
                                           r"both a file and a directory") as refused:
        sm_magic.launch(LISTER, inputs=[f"train={s3.uri}"])
    assert "\n" not in str(refused.value)
    assert cached_files(sm_env) == []
    nothing_launched(sm_env)


def test_a_key_with_a_name_longer_than_a_file_system_takes_is_one_clear_error(s3, sm_env):
    s3.put("rows.csv", b"1,2\n")
    s3.put("n" * 300 + ".csv", b"3,4\n")
    with pytest.raises(BackendError, match=r"input channel train: .*'[0-9a-f]+/data/n{300}\.csv'.*longer than the "
                                           r"255 bytes") as refused:
        sm_magic.launch(LISTER, inputs=[f"train={s3.uri}"])
    assert "\n" not in str(refused.value)
    assert cached_files(sm_env) == []
    nothing_launched(sm_env)


def test_odd_but_safe_key_names_reach_the_job_as_files_inside_its_channel(s3, sm_env):
    names = ["back\\..\\slash.txt", ".hidden", "..dots", "sp ace/ü.txt", "deep/er/rows.csv"]
    for name in names:
        s3.put(name, name.encode())
    job = sm_magic.launch(LISTER, inputs=[f"train={s3.uri}"], wait=True)
    assert seen_by(job) == {name: name for name in names}


def test_a_name_that_was_a_file_and_is_now_a_directory_in_s3_reaches_the_next_job(s3, sm_env):
    s3.put("a", b"a file\n")
    assert seen_by(sm_magic.launch(LISTER, inputs=[f"train={s3.uri}"], wait=True)) == {"a": "a file\n"}
    s3.client.delete_object(Bucket=BUCKET, Key=f"{s3.prefix}/a")
    s3.put("a/b", b"a file under a\n")
    assert seen_by(sm_magic.launch(LISTER, inputs=[f"train={s3.uri}"], wait=True)) == {"a/b": "a file under a\n"}


# --- finding 3: each job its own copy; the cache filled safely by many processes -----------------

def test_a_job_that_writes_into_its_channel_leaves_the_next_job_the_data_in_s3(s3, sm_env):
    s3.put("rows.csv", b"ORIGINAL\n")
    poisoner = textwrap.dedent("""
        import os
        root = os.environ['SM_CHANNEL_TRAIN']
        with open(os.path.join(root, 'rows.csv'), 'w') as f:
            f.write('POISONED\\n')
        open(os.path.join(root, 'planted.py'), 'w').write('print("planted")\\n')
        print('epoch 0: files=2')
    """)
    sm_magic.launch(poisoner, inputs=[f"train={s3.uri}"], wait=True)
    job = sm_magic.launch(LISTER, inputs=[f"train={s3.uri}"], wait=True)
    assert seen_by(job) == {"rows.csv": "ORIGINAL\n"}
    assert s3.get("rows.csv") == b"ORIGINAL\n"


def test_hosts_of_one_job_each_get_their_own_copy_of_the_channel(s3, sm_env):
    s3.put("rows.csv", b"ORIGINAL\n")
    marks = textwrap.dedent("""
        import json, os
        from accelerate import Accelerator
        acc = Accelerator()
        root, host = os.environ['SM_CHANNEL_TRAIN'], os.environ['SM_CURRENT_HOST']
        if acc.is_local_main_process:
            open(os.path.join(root, 'written-by-' + host), 'w').write(host)
        acc.wait_for_everyone()
        if acc.is_local_main_process:
            with open(os.path.join(os.environ['SM_MODEL_DIR'], 'seen.json'), 'w') as f:
                json.dump(sorted(os.listdir(root)), f)
        acc.wait_for_everyone()
        acc.end_training()
    """)
    job = sm_magic.launch(marks, inputs=[f"train={s3.uri}"], instance_count=2,
                          distributed_type="DATA_PARALLEL", wait=True)
    for tree, host in [("opt_ml", "algo-1"), ("hosts/algo-2/opt_ml", "algo-2")]:
        seen = json.loads((sm_env_jobs() / job.name / tree / "model/seen.json").read_text())
        assert seen == ["rows.csv", f"written-by-{host}"]



def test_a_jobs_copy_of_its_channel_is_freed_when_it_ends_and_s3_keeps_the_data(s3, sm_env):
    """A copy per job that stayed would fill the disk a dataset at a time; the job's model and
    logs stay. A link the script leaves in its channel is removed, not followed."""
    s3.put("rows.csv", b"ORIGINAL\n" * 1000)
    keep = sm_env / "keep.txt"
    keep.write_text("mine\n")
    linker = textwrap.dedent(f"""
        import os
        root = os.environ['SM_CHANNEL_TRAIN']
        os.symlink({str(sm_env)!r}, os.path.join(root, 'outside'))
        open(os.path.join(os.environ['SM_MODEL_DIR'], 'model.txt'), 'w').write('weights')
        print('epoch 0: loss=0.5')
    """)
    job = sm_magic.launch(linker, inputs=[f"train={s3.uri}"], wait=True)
    assert job.status == "Completed"
    channel = sm_env_jobs() / job.name / "opt_ml/input/data/train"
    wait_until(lambda: not channel.exists(), timeout=60, what="the job's copy of its channel freed")
    assert job.model_data and Path(job.model_data).is_file()
    assert keep.read_text() == "mine\n"
    assert s3.get("rows.csv") == b"ORIGINAL\n" * 1000


CHILD = textwrap.dedent("""
    import pathlib, sys, time
    import sm_magic
    here = pathlib.Path(sys.argv[1])
    (here / f"ready-{sys.argv[2]}").touch()
    while not (here / "go").exists():
        time.sleep(0.01)
    job = sm_magic.launch(sys.argv[3], inputs=[sys.argv[4]], name=f"cold-{sys.argv[2]}", wait=True)
    print("ran", job.name)
""")


def test_four_processes_launching_with_the_same_cold_input_all_run_it(s3, sm_env):
    count = 40
    for i in range(count):
        s3.put(f"part-{i:03d}.csv", (f"{i}," * 20_000).encode())
    gate = sm_env / "gate"
    gate.mkdir()
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(gate), str(n), LISTER,
                                  f"train={s3.uri}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for n in range(4)]
    deadline = time.monotonic() + 120
    while len(list(gate.glob("ready-*"))) < 4:  # every child has imported sm_magic: they start together
        assert time.monotonic() < deadline and all(c.poll() is None for c in children)
        time.sleep(0.05)
    (gate / "go").touch()
    results = [c.communicate(timeout=300) for c in children]
    for child, (out, err) in zip(children, results):
        assert child.returncode == 0, err
        assert out.split()[-2:] == ["ran", f"cold-{children.index(child)}"]
    for n in range(4):
        seen = json.loads((sm_env_jobs() / f"cold-{n}" / "opt_ml/model/seen.json").read_text())
        assert seen == {f"part-{i:03d}.csv": f"{i}," * 20_000 for i in range(count)}
    leftovers = [p for p in (sm_env / "cache").rglob("*") if "part" in p.name and not p.name.endswith(".csv")]
    assert leftovers == []


# --- finding 7: uploads of local inputs ----------------------------------------------------------

def uploaded_prefix(aws, name) -> str:
    request = aws.client("sagemaker").describe_training_job(TrainingJobName=name)
    return request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]


def objects_under(aws, uri) -> dict[str, bytes]:
    s3 = aws.client("s3")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return {o["Key"][len(prefix):]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])}


def test_two_input_sets_whose_names_and_bytes_run_together_the_same_get_their_own_data(aws, sm_env):
    one, two = sm_env / "one", sm_env / "two"
    one.mkdir()
    two.mkdir()
    (one / "a").write_bytes(b"x\0b\0y")
    (two / "a").write_bytes(b"x")
    (two / "b").write_bytes(b"y")
    first = sm_magic.launch(EPOCHS_SCRIPT, inputs=[f"train={one}"], name="hash-1", **SAGEMAKER)
    second = sm_magic.launch(EPOCHS_SCRIPT, inputs=[f"train={two}"], name="hash-2", **SAGEMAKER)
    assert uploaded_prefix(aws, first.name) != uploaded_prefix(aws, second.name)
    assert objects_under(aws, uploaded_prefix(aws, second.name)) == {"a": b"x", "b": b"y"}
    assert objects_under(aws, uploaded_prefix(aws, first.name)) == {"a": b"x\0b\0y"}


def test_a_link_out_of_an_input_directory_is_refused_before_anything_is_uploaded(aws, sm_env):
    secret = "[default]\naws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY\n"
    home_aws = sm_env / "home" / ".aws"
    home_aws.mkdir(parents=True, exist_ok=True)
    (home_aws / "credentials").write_text(secret)
    data = sm_env / "data"
    data.mkdir()
    (data / "rows.csv").write_text("1,2\n")
    (data / "notes.txt").symlink_to(home_aws / "credentials")
    with pytest.raises((BackendError, LaunchError)) as refused:
        sm_magic.launch(EPOCHS_SCRIPT, inputs=[f"train={data}"], **SAGEMAKER)
    message = str(refused.value)
    assert "\n" not in message and "input channel train" in message and "notes.txt" in message
    assert "outside" in message
    s3 = aws.client("s3")
    for bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                assert b"bPxRfiCY" not in s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read(), o["Key"]
    assert Registry().list() == []


def test_a_link_inside_an_input_directory_is_uploaded_as_the_file_it_names(aws, sm_env):
    data = sm_env / "data"
    (data / "real").mkdir(parents=True)
    (data / "real" / "rows.csv").write_text("1,2\n")
    (data / "latest.csv").symlink_to("real/rows.csv")
    job = sm_magic.launch(EPOCHS_SCRIPT, inputs=[f"train={data}"], name="inside-link", **SAGEMAKER)
    assert objects_under(aws, uploaded_prefix(aws, job.name)) == {"latest.csv": b"1,2\n", "real/rows.csv": b"1,2\n"}


def test_a_file_that_may_hold_secrets_is_left_out_of_an_upload_with_a_note(aws, sm_env, capsys):
    data = sm_env / "data"
    data.mkdir()
    (data / "rows.csv").write_text("1,2\n")
    (data / ".env").write_text("HF_TOKEN=hf_" + "x" * 34 + "\n")
    job = sm_magic.launch(EPOCHS_SCRIPT, inputs=[f"train={data}"], name="secret-file", **SAGEMAKER)
    assert objects_under(aws, uploaded_prefix(aws, job.name)) == {"rows.csv": b"1,2\n"}
    assert "sm_magic: input channel train: left out of the upload (may hold secrets" in capsys.readouterr().out
