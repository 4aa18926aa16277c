"""The model back in the notebook: `Job.download()` and `Job.output_files()` of a real local job and
of a SageMaker job on moto (its model.tar.gz put in moto's S3 as the service would), the archives
that are refused (members that climb out, absolute names, links out, devices) with nothing written
anywhere, a directory that already holds files, and jobs that have not ended."""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from sm_magic.backends.sagemaker.backend import SageMakerBackend
from sm_magic.jobs import artifacts
from sm_magic.jobs.artifacts import DownloadError, OutputFile
from sm_magic.jobs.job import Job
from sm_magic.widgets.progress import summary_html

from helpers.jobscripts import script, wait_until

# A script as people write one: weights, a tokenizer folder, and predictions as output data.
MODEL_SCRIPT = script("""
    import os
    model_dir = os.environ["SM_MODEL_DIR"]
    os.makedirs(os.path.join(model_dir, "tokenizer"))
    with open(os.path.join(model_dir, "weights.bin"), "wb") as f:
        f.write(bytes(range(256)) * 20)
    with open(os.path.join(model_dir, "tokenizer", "vocab.txt"), "w") as f:
        f.write("hello\\nworld\\n")
    with open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "predictions.csv"), "w") as f:
        f.write("id,label\\n1,0\\n")
    print("saved")
""")
WEIGHTS = bytes(range(256)) * 20


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _everything(root: Path) -> set[str]:
    """Every path under root, links not followed: what a refused unpack must leave unchanged."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# -- a real local job ----------------------------------------------------------------------------

@pytest.mark.jobs
def test_a_local_jobs_model_is_unpacked_beside_the_notebook_and_its_files_listed(sm_env):
    import sm_magic

    job = sm_magic.launch(MODEL_SCRIPT, wait=True)
    assert job.status == "Completed"

    target = job.download()
    assert target == sm_env / f"{job.name}-model"
    assert _tree(target) == {"weights.bin": WEIGHTS, "tokenizer/vocab.txt": b"hello\nworld\n"}
    assert sorted(job.output_files()) == [OutputFile("model/tokenizer/vocab.txt", 12),
                                          OutputFile("model/weights.bin", len(WEIGHTS)),
                                          OutputFile("output/predictions.csv", 13)]

    # Run twice, a cell never overwrites silently; overwrite=True replaces, and keeps the user's own.
    (target / "weights.bin").write_bytes(b"changed")
    (target / "notes.txt").write_text("mine")
    with pytest.raises(DownloadError, match="already holds files: pass overwrite=True"):
        job.download()
    assert (target / "weights.bin").read_bytes() == b"changed"
    assert job.download(overwrite=True) == target
    assert (target / "weights.bin").read_bytes() == WEIGHTS and (target / "notes.txt").read_text() == "mine"

    elsewhere = job.download(sm_env / "models" / "first")
    assert _tree(elsewhere) == {"weights.bin": WEIGHTS, "tokenizer/vocab.txt": b"hello\nworld\n"}
    with pytest.raises(DownloadError, match="is a file, not a directory"):
        job.download(sm_env / "models" / "first" / "weights.bin")
    with pytest.raises(DownloadError, match=r"unpacks to 5 KB or more .*over max_bytes=1024 \(1 KB\); nothing was unpacked"):
        job.download(sm_env / "models" / "capped", max_bytes=1024)  # the model is 5 KB
    assert not (sm_env / "models" / "capped").exists() or not any((sm_env / "models" / "capped").iterdir())
    assert not [p for p in _everything(sm_env) if p.endswith(".part")]

    # The finished job's summary says how to get it.
    summary = summary_html(job.snapshot())
    assert "model.tar.gz (2 files, 5 KB): <code>job.download()</code>" in summary
    assert f"./{job.name}-model/" in summary


@pytest.mark.jobs
def test_an_unfinished_local_job_is_refused_until_it_ends(sm_env):
    import sm_magic

    go = sm_env / "go"
    job = sm_magic.launch(script(f"""
        import os, time
        while not os.path.exists({str(go)!r}):
            time.sleep(0.05)
        open(os.path.join(os.environ["SM_MODEL_DIR"], "model.pt"), "w").write("w")
    """))
    wait_until(lambda: job.refresh().secondary_status == "Training", 60, "the job to train")
    with pytest.raises(DownloadError, match=rf"job {job.name} is InProgress: its model is written when it ends; "
                                            r"job.wait\(\) first"):
        job.download()
    with pytest.raises(DownloadError, match="job.wait"):
        job.output_files()
    assert not (sm_env / f"{job.name}-model").exists()
    go.touch()
    assert _tree(job.wait(timeout=120).download()) == {"model.pt": b"w"}


@pytest.mark.jobs
def test_a_link_out_of_a_local_jobs_model_is_refused_and_nothing_is_written(sm_env):
    import sm_magic

    secret = sm_env / "secret.txt"
    secret.write_text("not the model's")
    job = sm_magic.launch(script(f"""
        import os
        os.symlink({str(secret)!r}, os.path.join(os.environ["SM_MODEL_DIR"], "leak"))
    """), wait=True)
    before = _everything(sm_env)
    with pytest.raises(DownloadError, match=r"member 'leak' links out of the directory.*nothing was unpacked"):
        job.download()
    assert _everything(sm_env) == before and secret.read_text() == "not the model's"
    assert OutputFile("model/leak", 0) not in job.output_files()  # links are not files the job wrote


# -- SageMaker on moto ---------------------------------------------------------------------------

def _archive(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def _device(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    return info, None


class SageMakerJob:
    """A training job in moto, driven as the service would, its model put where it says."""

    def __init__(self, aws):
        self.aws = aws
        self.name = f"smm-{uuid.uuid4().hex[:12]}"
        aws.client("sagemaker").create_training_job(
            TrainingJobName=self.name, RoleArn=aws.role_arn,
            AlgorithmSpecification={"TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/"
                                                     "huggingface-pytorch-training:latest",
                                    "TrainingInputMode": "File"},
            OutputDataConfig={"S3OutputPath": f"s3://{aws.bucket}/output"},
            ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
            StoppingCondition={"MaxRuntimeInSeconds": 3600})
        aws.start_lifecycle(self.name)  # moto's jobs are born Completed
        aws.drive(self.name, "Training")
        self.uri = f"s3://{aws.bucket}/output/{self.name}/output/model.tar.gz"

    def put(self, file: str, body: bytes) -> None:
        self.aws.client("s3").put_object(Bucket=self.aws.bucket, Key=f"output/{self.name}/output/{file}", Body=body)

    def end(self, secondary: str = "Completed", **kw) -> Job:
        self.aws.drive(self.name, secondary, **kw)
        job = Job(self.name, SageMakerBackend())
        assert job.status == ("Failed" if secondary == "Failed" else secondary)
        return job


@pytest.mark.jobs
def test_a_sagemaker_jobs_model_comes_from_s3_unpacked_and_its_output_listed(aws):
    sm = SageMakerJob(aws)
    job = Job(sm.name, SageMakerBackend())
    with pytest.raises(DownloadError, match=f"job {sm.name} is InProgress: .*job.wait"):
        job.download()
    sm.put("model.tar.gz", _archive([_file("model.safetensors", WEIGHTS), _file("config/config.json", b"{}")]))
    job = sm.end()
    assert job.model_data == sm.uri
    # The output listing before any output.tar.gz exists: the model's members alone.
    assert sorted(job.output_files()) == [OutputFile("model/config/config.json", 2),
                                          OutputFile("model/model.safetensors", len(WEIGHTS))]
    sm.put("output.tar.gz", _archive([_file("eval/metrics.json", b'{"f1": 0.9}')]))
    assert OutputFile("output/eval/metrics.json", 11) in job.output_files()

    target = job.download()
    assert target == Path.cwd() / f"{sm.name}-model"
    assert _tree(target) == {"model.safetensors": WEIGHTS, "config/config.json": b"{}"}
    assert not [p for p in _everything(target.parent) if p.endswith(".part")]
    summary = summary_html(job.snapshot())
    assert "model.tar.gz: <code>job.download()</code>" in summary  # not fetched for a summary


@pytest.mark.jobs
def test_a_failed_sagemaker_job_and_a_missing_model_are_said_plainly(aws):
    failed = SageMakerJob(aws).end("Failed", failure_reason="AlgorithmError: boom")
    with pytest.raises(DownloadError, match="failed: it wrote no model"):
        failed.download()
    gone = SageMakerJob(aws).end()  # Completed, but nothing at its model's URI
    with pytest.raises(DownloadError, match=r"model is not at s3://.*deleted from S3"):
        gone.download()
    assert not (Path.cwd() / f"{gone.name}-model").exists()


HOSTILE = {  # each archive as a function of the directory the notebook is in
    "climbs": (lambda root: [_file("ok.txt", b"fine"), _file("../escape.txt", b"x")], "'../escape.txt' climbs out"),
    "deep climb": (lambda root: [_file("a/../../escape.txt", b"x")], "'a/../../escape.txt' climbs out"),
    "absolute": (lambda root: [_file(f"{root}/escape.txt", b"x")], "escape.txt' is an absolute path"),
    "symlink out": (lambda root: [_link("up", "../.."), _file("up/escape.txt", b"x")], "'up' links out"),
    "absolute symlink": (lambda root: [_link("etc", "/etc")], "'etc' links out"),
    "hard link out": (lambda root: [_link("h", "../escape.txt", tarfile.LNKTYPE)], "'h' links out"),
    "device": (lambda root: [_device("null")], "'null' is a device or FIFO"),
}


@pytest.mark.jobs
@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_model_tar_is_refused_naming_the_member_and_nothing_is_written(aws, case):
    members, message = HOSTILE[case]
    root = Path.cwd()
    sm = SageMakerJob(aws)
    sm.put("model.tar.gz", _archive(members(root)))
    job = sm.end()
    before = _everything(root.parent)
    with pytest.raises(DownloadError, match=re.escape(message) + ".*nothing was unpacked"):
        job.download(root / "models" / "m")
    # The parent is made; nothing is in it, and nothing was written anywhere else.
    assert _everything(root.parent) == before | {f"{root.name}/models"}
    assert not list((root / "models").iterdir())


# -- unpacking, without a job --------------------------------------------------------------------

def test_links_that_stay_inside_are_unpacked(tmp_path):
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(_archive([_file("weights/v1.bin", b"w"), _link("latest.bin", "weights/v1.bin"),
                                  _link("copy.bin", "weights/v1.bin", tarfile.LNKTYPE)]))
    target = artifacts.unpack(archive, tmp_path / "out", overwrite=False, what="model.tar.gz")
    assert os.readlink(target / "latest.bin") == "weights/v1.bin"
    assert (target / "latest.bin").read_bytes() == (target / "copy.bin").read_bytes() == b"w"


def test_a_broken_archive_is_one_line_and_nothing_is_left(tmp_path):
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(_archive([_file("weights.bin", WEIGHTS)])[:200])
    with pytest.raises(DownloadError, match="model.tar.gz: .*nothing was unpacked"):
        artifacts.unpack(archive, tmp_path / "out", overwrite=False, what="model.tar.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tar.gz"]


def test_sizes_read_as_a_person_reads_them():
    assert [artifacts.size_text(n) for n in (0, 900, 5120, 3_500_000, 50 << 20, 3 << 30)] == \
        ["0 bytes", "900 bytes", "5 KB", "3.3 MB", "50 MB", "3.0 GB"]
    assert artifacts.size_text(1 << 50) == "1024 TB"


# -- bounds: a tar bomb is refused before it is written ------------------------------------------

CHUNK = 64 << 20


def _bomb(name: str, declared: int, data: int | None = None, fill: bytes = b"\0") -> bytes:
    """A model.tar.gz whose one member `name` declares `declared` bytes and is followed by `data`
    bytes of `fill` (default: exactly `declared`, then the end of the archive): concatenated gzip
    members (gzip allows it; `tar xzf` and tarfile read it), each 64 MiB of `fill` compressed once
    and repeated, so a 2 GiB member is 2 MB and a fraction of a second to build."""
    data = declared if data is None else data
    info = tarfile.TarInfo(name)
    info.size = declared
    chunk = gzip.compress(fill * CHUNK, 9)
    whole, rest = divmod(data, CHUNK)
    tail = fill * rest
    if data == declared:
        tail += b"\0" * (-declared % 512) + b"\0" * 1024  # padding, then the two empty blocks that end it
    return gzip.compress(info.tobuf(format=tarfile.PAX_FORMAT)) + chunk * whole + gzip.compress(tail)


def _tiny(n: int, size: int = 0) -> bytes:
    return _archive([_file(f"shard-{i:05d}.bin", bytes([i % 251]) * size) for i in range(n)])


def test_a_tar_bomb_is_refused_from_its_header_naming_its_size_and_the_bound(tmp_path):
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(_bomb("weights.bin", 2 << 30))
    assert archive.stat().st_size < 8 << 20
    with tarfile.open(archive, "r:gz") as tar:  # a real archive: its first header declares 2 GiB
        first = tar.next()
        assert (first.name, first.size) == ("weights.bin", 2 << 30)

    with pytest.raises(DownloadError, match=re.escape(
            "model.tar.gz unpacks to 2.0 GB or more (member 'weights.bin' reaches it), over "
            "max_bytes=16777216 (16 MB); nothing was unpacked. Pass a larger max_bytes=")):
        artifacts.unpack(archive, tmp_path / "out", overwrite=False, what="model.tar.gz", max_bytes=16 << 20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tar.gz"]  # no scratch, no target


def test_a_sparse_member_counts_as_the_size_it_unpacks_to(tmp_path):
    # GNU tar's --sparse stores a 2 GiB file of holes in a few hundred bytes; unpacked on a file
    # system without holes it is 2 GiB, so it counts as 2 GiB.
    weights = tmp_path / "src" / "weights.bin"
    weights.parent.mkdir()
    with open(weights, "wb") as f:
        f.truncate(2 << 30)
        f.seek(1 << 20)
        f.write(b"data")
    archive = tmp_path / "model.tar.gz"
    subprocess.run(["tar", "--sparse", "-czf", str(archive), "-C", str(weights.parent), "weights.bin"], check=True)
    with tarfile.open(archive, "r:gz") as tar:
        assert tar.next().sparse, "tar wrote no sparse member"
    assert archive.stat().st_size < 4096
    with pytest.raises(DownloadError, match=r"unpacks to 2\.0 GB or more \(member 'weights.bin' reaches it\), over "
                                            r"max_bytes=16777216"):
        artifacts.unpack(archive, tmp_path / "out", overwrite=False, what="model.tar.gz", max_bytes=16 << 20)
    assert not (tmp_path / "out").exists()


def test_an_archive_larger_than_the_free_space_is_refused_and_says_where(tmp_path):
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(_bomb("weights.bin", 2 << 30))
    # Keep all but 64 MiB of the disk free: the 2 GiB member does not fit what is left.
    keep = shutil.disk_usage(tmp_path).free - (64 << 20)
    with pytest.raises(DownloadError, match=r"unpacks to 2\.0 GB or more \(member 'weights.bin' reaches it\), more "
                                            rf"than the [\d.]+ MB the disk of {re.escape(str(tmp_path))} can take "
                                            r"\([\d.]+ GB free, [\d.]+ GB kept free\); nothing was unpacked. "
                                            r"Free some space, or pass path= a directory on a larger disk"):
        artifacts.unpack(archive, tmp_path / "out", overwrite=False, what="model.tar.gz", keep_free=keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tar.gz"]


def test_the_bound_is_on_the_sum_of_the_members_and_a_model_at_it_unpacks(tmp_path):
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(_tiny(3, 400 << 10))  # three shards of 400 KiB: 1200 KiB in all
    with pytest.raises(DownloadError, match=r"unpacks to 1\.2 MB or more \(member 'shard-00002.bin' reaches it\)"):
        artifacts.unpack(archive, tmp_path / "out", overwrite=False, what="model.tar.gz", max_bytes=1 << 20)
    assert not (tmp_path / "out").exists()
    target = artifacts.unpack(archive, tmp_path / "out", overwrite=False, what="model.tar.gz",
                              max_bytes=1200 << 10)
    assert sorted(p.stat().st_size for p in target.iterdir()) == [400 << 10] * 3


def test_too_many_members_are_refused_and_as_many_as_the_bound_unpack(tmp_path):
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(_tiny(11))
    with pytest.raises(DownloadError, match=r"model.tar.gz has more than 10 members; nothing was unpacked"):
        artifacts.unpack(archive, tmp_path / "out", overwrite=False, what="model.tar.gz", max_members=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tar.gz"]
    assert len(list(artifacts.unpack(archive, tmp_path / "out", False, "model.tar.gz", max_members=11).iterdir())) == 11


def test_a_header_that_declares_less_than_follows_writes_no_more_than_it_declares(tmp_path):
    # 1 KiB declared, then 256 MiB of data that is no tar header: tarfile copies the 1 KiB and
    # stops at the header that does not parse.
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(_bomb("weights.bin", 1024, data=1024 + (4 * CHUNK), fill=b"\1"))
    target = artifacts.unpack(archive, tmp_path / "out", overwrite=False, what="model.tar.gz")
    assert _tree(target) == {"weights.bin": b"\1" * 1024}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tar.gz", "out"]


def test_a_header_that_declares_more_than_follows_fails_and_leaves_nothing(tmp_path):
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(_bomb("weights.bin", 10 << 20, data=1 << 20))
    with pytest.raises(DownloadError, match="model.tar.gz: .*unexpected end of data; nothing was unpacked"):
        artifacts.unpack(archive, tmp_path / "out", overwrite=False, what="model.tar.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tar.gz"]


@pytest.mark.jobs
def test_a_sagemaker_model_declaring_more_than_any_disk_is_refused_by_default(aws):
    sm = SageMakerJob(aws)
    sm.put("model.tar.gz", _bomb("model.safetensors", 1 << 50, data=1 << 20))  # 1 PiB declared, 1 MiB sent
    job = sm.end()
    root = Path.cwd()
    before = _everything(root.parent)
    with pytest.raises(DownloadError, match=rf"job {sm.name}'s model.tar.gz unpacks to 1024 TB or more .*more than "
                                            r"the .* the disk of .* can take .*nothing was unpacked"):
        job.download(root / "models" / "m")
    assert _everything(root.parent) == before | {f"{root.name}/models"}
