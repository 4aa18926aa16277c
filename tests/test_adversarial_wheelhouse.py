"""The wheelhouse of a network-isolated job and the requirements refusals, probed as an adversary
and a careless user would: issue 23, finding 4 (dependency confusion: the wheels came from
another index than the requirements file names, a hash-pinned file gave an empty `sm_wheels/`
and the job was submitted anyway) and finding 7's requirements part (local paths written as
`pkg @ file:///...`, `-e/path`, `-e<TAB>/path`, `git+file:///...` or a bare archive name got past
the refusal and failed in the container).

Real pip against real local indexes: each test writes tiny wheels and a `file://` simple index
(`simple/<name>/index.html`) or a `--find-links` directory under tmp_path, and pip's own
configuration is switched off (PIP_CONFIG_FILE=/dev/null), so nothing here reaches a network
index. The "default index" of a dependency-confusion probe is one of those local indexes too,
given as PIP_INDEX_URL as a user's pip.conf would give it."""

from __future__ import annotations

import base64
import hashlib
import http.server
import importlib.metadata as md
import io
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import nbformat
import pytest
from IPython.core.error import UsageError

import sm_magic
from sm_magic.jobs.registry import Registry
from sm_magic.plan.planner import LaunchError, dry_run

from helpers.aws_moto import ROLE_NAME
from helpers.jobscripts import EPOCHS_SCRIPT

SAGEMAKER = dict(backend="sagemaker", instance_type="ml.g5.xlarge", iam_role_name=ROLE_NAME)
ISOLATED = dict(additional_args={"enable_network_isolation": True}, **SAGEMAKER)
TOKEN = "s3cr3t-t0ken-4e1c9b"  # a private index's password, as CodeArtifact or Artifactory give one


# -- tiny wheels and local indexes ------------------------------------------------------------

def wheel_bytes(name: str, version: str, where: str, requires: tuple[str, ...] = ()) -> bytes:
    """A pure-Python wheel whose module says `WHERE = where` (which index it came from)."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}.py": f"WHERE = {where!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                            + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: sm_magic-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }

    def record_hash(data: bytes) -> str:
        return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{path},{record_hash(text.encode())},{len(text.encode())}\n" for path, text in files.items())
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for path, text in {**files, f"{info}/RECORD": record + f"{info}/RECORD,,\n"}.items():
            z.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), text)
    return out.getvalue()


def came_from(data: bytes) -> str:
    """The index a wheel was built for (its module's WHERE)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        module = next(n for n in z.namelist() if n.endswith(".py"))
        return z.read(module).decode().split("=", 1)[1].strip().strip("'")


def wheel_name(name: str, version: str) -> str:
    return f"{name.replace('-', '_')}-{version}-py3-none-any.whl"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Index:
    """A `file://` simple index (PEP 503) in a directory: `url` for --index-url."""

    def __init__(self, root: Path):
        self.root = root
        self.url = (root / "simple").as_uri() + "/"
        self.wheels: dict[str, bytes] = {}

    def add(self, name: str, version: str, requires: tuple[str, ...] = ()) -> bytes:
        data = wheel_bytes(name, version, f"{self.root.name}", requires)
        filename = wheel_name(name, version)
        (self.root / "files").mkdir(parents=True, exist_ok=True)
        (self.root / "files" / filename).write_bytes(data)
        self.wheels[filename] = data
        project = self.root / "simple" / name
        project.mkdir(parents=True, exist_ok=True)
        links = [f'<a href="../../files/{f}#sha256={sha256(d)}">{f}</a>' for f, d in sorted(self.wheels.items())
                 if f.startswith(name.replace("-", "_") + "-")]
        (project / "index.html").write_text("<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n")
        return data


class Served:
    """An index directory served over HTTP on 127.0.0.1, behind HTTP basic auth when `password`
    is given (a private index as CodeArtifact or Artifactory serve one)."""

    def __init__(self, index: Index, user: str = "", password: str = ""):
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(index.root), **kwargs)

            def do_GET(self):
                requests.append(self.path)
                if password and self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="private"')
                    self.end_headers()
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        auth = f"{user}:{password}@" if password else ""
        self.url = f"http://{auth}127.0.0.1:{self.port}/simple/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pip_offline(sm_env, monkeypatch):
    """pip with none of this machine's configuration (its mirrors, find-links, constraints), and a
    wheel cache of the test's own."""
    for key in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    monkeypatch.setenv("SM_MAGIC_CACHE", str(sm_env / "cache"))
    return sm_env


@pytest.fixture
def indexes(pip_offline, monkeypatch):
    """A public index (pip's default here, as a pip.conf would make it) and a private one, each
    with a fake `accelerate` so that a job's launcher resolves without PyPI."""
    public, private = Index(pip_offline / "public"), Index(pip_offline / "private")
    for index in (public, private):
        index.add("accelerate", "1.0.0")
    monkeypatch.setenv("PIP_INDEX_URL", public.url)
    return public, private


def carried(aws, job_name: str) -> dict[str, bytes]:
    """The wheels in the job's uploaded bundle: file name -> bytes, as the container gets them."""
    request = aws.client("sagemaker").describe_training_job(TrainingJobName=job_name)
    code = next(c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]
                if c["ChannelName"] == "code")
    bucket, _, prefix = code.removeprefix("s3://").partition("/")
    s3 = aws.client("s3")
    out = {}
    for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/sm_wheels/").get("Contents", []):
        out[o["Key"].rsplit("/", 1)[1]] = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
    return out


def uploaded_text(aws, job_name: str, file: str) -> str:
    request = aws.client("sagemaker").describe_training_job(TrainingJobName=job_name)
    code = next(c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]
                if c["ChannelName"] == "code")
    bucket, _, prefix = code.removeprefix("s3://").partition("/")
    return aws.client("s3").get_object(Bucket=bucket, Key=f"{prefix}/{file}")["Body"].read().decode()


def nothing_launched(aws, name: str) -> None:
    assert Registry().list() == []
    jobs = aws.client("sagemaker").list_training_jobs(NameContains=name)["TrainingJobSummaries"]
    assert [j["TrainingJobName"] for j in jobs if j["TrainingJobName"] == name] == []


# -- finding 4: the wheels come from the index the requirements file names ---------------------

@pytest.mark.jobs
def test_a_package_on_the_private_index_is_carried_from_there_not_from_the_default_index(aws, indexes):
    public, private = indexes
    mine = private.add("acme-internal", "1.0")
    public.add("acme-internal", "1.0")  # the squatter: same name, same version, other content
    reqs = Path.cwd() / "requirements.txt"
    reqs.write_text(f"--index-url {private.url}\naccelerate\nacme-internal==1.0\n")
    job = sm_magic.launch(EPOCHS_SCRIPT, requirements=reqs, name="confused-1", **ISOLATED)
    wheels = carried(aws, job.name)
    assert {name: came_from(data) for name, data in wheels.items()} == {
        wheel_name("acme-internal", "1.0"): "private", wheel_name("accelerate", "1.0.0"): "private"}
    assert wheels[wheel_name("acme-internal", "1.0")] == mine
    # In the container pip looks only in sm_wheels/: the file's index is left there as a comment.
    lines = uploaded_text(aws, job.name, "requirements.txt").splitlines()
    assert lines[1:3] == ["--no-index", "--find-links sm_wheels"] and f"# --index-url {private.url}" in lines


@pytest.mark.jobs
def test_the_wheel_cache_never_serves_another_indexs_file_of_the_same_name(aws, indexes):
    """One cache for every project of the user: a file of the same name and version fetched
    later from the default index does not replace the private one a cached set carries."""
    public, private = indexes
    private.add("acme-internal", "1.0")
    public.add("acme-internal", "1.0")
    mine, theirs = Path.cwd() / "mine.txt", Path.cwd() / "theirs.txt"
    mine.write_text(f"--index-url {private.url}\naccelerate\nacme-internal==1.0\n")
    theirs.write_text("accelerate\nacme-internal==1.0\n")
    first = sm_magic.launch(EPOCHS_SCRIPT, requirements=mine, name="cache-1", **ISOLATED)
    dry_run(EPOCHS_SCRIPT, requirements=theirs, **ISOLATED)  # another project, the default index
    again = sm_magic.launch(EPOCHS_SCRIPT, requirements=mine, name="cache-2", **ISOLATED)
    for job in (first, again):
        assert came_from(carried(aws, job.name)[wheel_name("acme-internal", "1.0")]) == "private"


@pytest.mark.jobs
def test_a_package_only_on_the_private_index_is_carried(indexes):
    public, private = indexes
    private.add("acme-only-here", "2.1", requires=("acme-helper>=1",))
    private.add("acme-helper", "1.3")
    Path("requirements.txt").write_text(f"-i {private.url}\naccelerate\nacme-only-here\n")
    text = dry_run(EPOCHS_SCRIPT, requirements="requirements.txt", **ISOLATED)
    assert "installed offline (network isolation) from 3 wheels carried in the bundle" in text


@pytest.mark.jobs
def test_what_only_the_images_python_installs_is_carried(indexes):
    """pip decides markers for the Python it runs on (this one), the container for the image's
    (3.12): a line and a dependency that only 3.12 installs are carried all the same, and one
    that only this Python installs is not."""
    _, private = indexes
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    private.add("acme-app", "1.0", requires=('acme-backport ; python_version == "3.12"',
                                             f'acme-old ; python_version == "{here}" and python_version != "3.12"'))
    for name in ("acme-backport", "acme-old", "acme-new"):
        private.add(name, "1.0")
    Path("requirements.txt").write_text(f'-i {private.url}\naccelerate\nacme-app\nacme-new ; python_version >= "3.12"\n'
                                        f'acme-old ; python_version == "{here}" and python_version != "3.12"\n')
    text = dry_run(EPOCHS_SCRIPT, requirements="requirements.txt", **ISOLATED)
    # accelerate, acme-app, acme-backport, acme-new
    assert "installed offline (network isolation) from 4 wheels carried in the bundle" in text


def pip_compiled(index: Index, pins: dict[str, bytes]) -> str:
    """A requirements file as `pip-compile --generate-hashes` writes it: continuation lines,
    one `--hash` per line, `# via` comments."""
    out = ["#", "# This file is autogenerated by pip-compile with Python 3.12", "#", f"--index-url {index.url}", ""]
    for pin, data in pins.items():
        out += [f"{pin} \\", f"    --hash=sha256:{sha256(data)}", "    # via -r requirements.in"]
    return "\n".join(out) + "\n"


@pytest.mark.jobs
def test_a_hash_pinned_file_carries_its_wheels_and_keeps_its_hashes(aws, indexes):
    _, private = indexes
    acme = private.add("acme-internal", "1.0", requires=("acme-helper",))
    helper = private.add("acme-helper", "1.3")
    accelerate = private.wheels[wheel_name("accelerate", "1.0.0")]
    reqs = Path.cwd() / "requirements.txt"
    reqs.write_text(pip_compiled(private, {"accelerate==1.0.0": accelerate, "acme-internal==1.0": acme,
                                           "acme-helper==1.3": helper}))
    job = sm_magic.launch(EPOCHS_SCRIPT, requirements=reqs, name="hashed-1", **ISOLATED)
    assert carried(aws, job.name) == {wheel_name("accelerate", "1.0.0"): accelerate,
                                      wheel_name("acme-internal", "1.0"): acme, wheel_name("acme-helper", "1.3"): helper}
    written = uploaded_text(aws, job.name, "requirements.txt")
    assert f"acme-internal==1.0 \\\n    --hash=sha256:{sha256(acme)}\n" in written  # the container checks them too


@pytest.mark.jobs
def test_a_wheel_that_does_not_match_its_hash_is_refused_before_anything_is_uploaded(aws, indexes):
    _, private = indexes
    accelerate = private.wheels[wheel_name("accelerate", "1.0.0")]
    private.add("acme-internal", "1.0")
    reqs = Path.cwd() / "requirements.txt"
    reqs.write_text(pip_compiled(private, {"accelerate==1.0.0": accelerate,
                                           "acme-internal==1.0": b"what the user compiled against"}))
    with pytest.raises(LaunchError) as e:
        sm_magic.launch(EPOCHS_SCRIPT, requirements=reqs, name="tampered-1", **ISOLATED)
    assert "acme-internal==1.0" in str(e.value) and "does not match the --hash" in str(e.value)
    assert "\n" not in str(e.value)
    nothing_launched(aws, "tampered-1")


@pytest.mark.jobs
def test_require_hashes_with_a_line_that_has_none_is_refused_naming_it(indexes):
    _, private = indexes
    accelerate = private.wheels[wheel_name("accelerate", "1.0.0")]
    private.add("acme-internal", "1.0")
    Path("requirements.txt").write_text(f"--require-hashes\n-i {private.url}\n"
                                        f"accelerate==1.0.0 --hash=sha256:{sha256(accelerate)}\nacme-internal==1.0\n")
    with pytest.raises(LaunchError, match=r"hash-checking mode.* it has none for acme-internal==1\.0\. Add it"):
        dry_run(EPOCHS_SCRIPT, requirements="requirements.txt", **ISOLATED)


@pytest.mark.jobs
def test_a_hash_pinned_file_without_accelerate_is_refused_naming_accelerate(indexes):
    """sm_magic adds accelerate (the entry command runs it) without a hash, which pip's
    hash-checking mode refuses in the container: the launch says so first."""
    _, private = indexes
    acme = private.add("acme-internal", "1.0")
    private.add("accelerate", md.version("accelerate"))  # the notebook's, which sm_magic adds
    Path("requirements.txt").write_text(pip_compiled(private, {"acme-internal==1.0": acme}))
    with pytest.raises(LaunchError, match=r"it has none for accelerate==[\d.]+\. Add it with its hashes"):
        dry_run(EPOCHS_SCRIPT, requirements="requirements.txt", **ISOLATED)


@pytest.mark.jobs
def test_a_package_with_no_wheel_on_the_named_index_is_refused_naming_that_index(indexes):
    _, private = indexes
    sdist = private.root / "simple" / "acme-sdist-only"
    sdist.mkdir(parents=True)
    (sdist / "index.html").write_text('<a href="../../files/acme_sdist_only-1.0.tar.gz">acme_sdist_only-1.0.tar.gz</a>')
    Path("requirements.txt").write_text(f"--index-url {private.url}\naccelerate\nacme-sdist-only\n")
    with pytest.raises(LaunchError) as e:
        dry_run(EPOCHS_SCRIPT, requirements="requirements.txt", **ISOLATED)
    message = str(e.value)
    assert message.startswith("enable_network_isolation: acme-sdist-only has no wheel for the image's Python 3.12")
    assert f"in {private.url}," in message and "PyPI" not in message


@pytest.mark.jobs
def test_find_links_beside_the_requirements_file_is_where_the_wheels_come_from(pip_offline):
    project = pip_offline / "project"
    (project / "wheels").mkdir(parents=True)
    for name, version in [("accelerate", "1.0.0"), ("acme-internal", "1.0")]:
        (project / "wheels" / wheel_name(name, version)).write_bytes(wheel_bytes(name, version, "find-links"))
    (project / "requirements.txt").write_text("--no-index\n--find-links ./wheels\naccelerate\nacme-internal\n")
    text = dry_run(EPOCHS_SCRIPT, requirements=str(project / "requirements.txt"), **ISOLATED)
    assert "installed offline (network isolation) from 2 wheels carried in the bundle" in text


@pytest.mark.jobs
def test_a_wheel_given_by_its_url_is_carried(indexes):
    _, private = indexes
    private.add("acme-internal", "1.0")
    served = Served(private)
    try:
        Path("requirements.txt").write_text(
            f"-i {private.url}\naccelerate\nacme-internal @ http://127.0.0.1:{served.port}/files/"
            f"{wheel_name('acme-internal', '1.0')}\n")
        text = dry_run(EPOCHS_SCRIPT, requirements="requirements.txt", **ISOLATED)
    finally:
        served.close()
    assert "installed offline (network isolation) from 2 wheels carried in the bundle" in text


@pytest.mark.jobs
def test_a_private_index_token_is_written_nowhere(aws, indexes, capsys):
    """The token reaches the private index (the wheels come from there), and nothing sm_magic
    writes: not the bundle uploaded, not the job's files, the registry or the wheel cache, not
    what the launch or the dry run print."""
    _, private = indexes
    private.add("acme-internal", "1.0")
    served = Served(private, "ci", TOKEN)
    try:
        reqs = Path.cwd() / "requirements.txt"
        reqs.write_text(f"--index-url {served.url}\n--trusted-host 127.0.0.1\naccelerate\nacme-internal\n")
        text = dry_run(EPOCHS_SCRIPT, requirements=reqs, **ISOLATED)
        job = sm_magic.launch(EPOCHS_SCRIPT, requirements=reqs, name="token-1", **ISOLATED)
    finally:
        served.close()
    assert any(p.startswith("/files/acme_internal") for p in served.requests)
    assert {came_from(d) for d in carried(aws, job.name).values()} == {"private"}
    assert TOKEN not in text and "ci:****@127.0.0.1" in text
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err
    s3 = aws.client("s3")
    for bucket in s3.list_buckets()["Buckets"]:
        for o in s3.list_objects_v2(Bucket=bucket["Name"]).get("Contents", []):
            assert TOKEN.encode() not in s3.get_object(Bucket=bucket["Name"], Key=o["Key"])["Body"].read(), o["Key"]
    for path in Path.cwd().rglob("*"):
        if path.is_file() and path != reqs:
            assert TOKEN.encode() not in path.read_bytes(), path


# -- finding 7: every way of writing a local path is refused ----------------------------------

LOCAL_FORMS = ["acme @ file:///srv/acme", "-e/srv/acme", "-e\t/srv/acme", "--editable=/srv/acme",
               "git+file:///srv/acme.git#egg=acme", "acme @ git+file:///srv/acme.git",
               "acme-1.0-py3-none-any.whl", "./dist/acme.tar.gz", "dist/acme-1.0.tar.gz", "file:///srv/acme",
               "-e ../acme", "~/src/acme"]


@pytest.mark.parametrize("line", LOCAL_FORMS)
def test_a_local_path_in_any_form_is_refused_naming_the_line(ip, sm_env, line):
    mine = sm_env / "mine.txt"
    mine.write_text(f"numpy==2.0.0\n{line}\n")
    with pytest.raises(UsageError) as e:
        ip.run_cell_magic("sagemaker_train", f"--dry-run --requirements {mine}", EPOCHS_SCRIPT)
    message = str(e.value)
    assert "mine.txt, line 2:" in message and "installs from a path on this machine" in message
    assert "\n" not in message
    assert not (sm_env / "sm_jobs").exists() or not any((sm_env / "sm_jobs").iterdir())


@pytest.mark.parametrize("line", ["-rbase.txt", "--requirement=base.txt", "-c\tconstraints.txt"])
def test_a_reference_to_another_file_in_any_form_is_refused(ip, sm_env, line):
    mine = sm_env / "mine.txt"
    mine.write_text(f"{line}\n")
    with pytest.raises(UsageError, match=r"mine.txt, line 1: .* refers to another file"):
        ip.run_cell_magic("sagemaker_train", f"--dry-run --requirements {mine}", EPOCHS_SCRIPT)


def test_a_line_pip_cannot_read_is_refused_naming_it(ip, sm_env):
    mine = sm_env / "mine.txt"
    mine.write_text("numpy==2.0.0\n--index-urll https://example.invalid/simple\n")
    with pytest.raises(UsageError, match=r"mine.txt, line 2: '--index-urll https://example.invalid/simple' is not a "
                                         r"line pip reads \(no such option: --index-urll\)"):
        ip.run_cell_magic("sagemaker_train", f"--dry-run --requirements {mine}", EPOCHS_SCRIPT)


REMOTE_FORMS = ["acme @ https://files.example.com/acme-1.0-py3-none-any.whl",
                "https://files.example.com/acme-1.0-py3-none-any.whl",
                "git+https://github.com/example/acme.git@v1.0#egg=acme",
                "acme @ git+https://github.com/example/acme.git@v1.0",
                "-e git+https://github.com/example/acme.git#egg=acme",
                "numpy>=1.26 ; python_version >= '3.10'",
                "torch==2.9.0 \\\n    --hash=sha256:" + "0" * 64]


@pytest.mark.parametrize("line", REMOTE_FORMS)
def test_a_remote_requirement_is_kept_as_written(sm_env, line):
    mine = sm_env / "mine.txt"
    mine.write_text(f"{line}\n")
    text = dry_run(EPOCHS_SCRIPT, requirements=str(mine), backend="local")
    assert "".join(f"\n  {part}" for part in line.split("\n")) in text


# -- a private index's password where the container downloads, or no container at all ----------------

@pytest.mark.jobs
def test_a_password_in_an_index_url_is_refused_where_the_container_would_need_it(aws, pip_offline):
    """Without network isolation the container itself installs from the index, so the password
    would travel in the bundle uploaded to S3: refused, saying how to keep it out."""
    reqs = Path.cwd() / "requirements.txt"
    reqs.write_text(f"--extra-index-url https://ci:{TOKEN}@pkgs.example.com/simple\naccelerate\n")
    with pytest.raises(LaunchError) as e:
        sm_magic.launch(EPOCHS_SCRIPT, requirements=reqs, name="token-2", **SAGEMAKER)
    message = str(e.value)
    assert "holds a password" in message and "${PIP_TOKEN}" in message and "enable_network_isolation" in message
    assert TOKEN not in message and "\n" not in message
    s3 = aws.client("s3")   # one server for the whole session: other tests' objects are there too
    for bucket in s3.list_buckets()["Buckets"]:
        for o in s3.list_objects_v2(Bucket=bucket["Name"]).get("Contents", []):
            assert "token-2" not in o["Key"]
            assert TOKEN.encode() not in s3.get_object(Bucket=bucket["Name"], Key=o["Key"])["Body"].read(), o["Key"]
    assert Registry().get("token-2") is None


@pytest.mark.jobs
def test_a_password_given_as_a_variable_reaches_the_bundle_as_the_variable(aws, pip_offline):
    reqs = Path.cwd() / "requirements.txt"
    reqs.write_text("--extra-index-url https://ci:${PIP_TOKEN}@pkgs.example.com/simple\naccelerate\n")
    text = dry_run(EPOCHS_SCRIPT, requirements=reqs, **SAGEMAKER)
    assert "https://ci:${PIP_TOKEN}@pkgs.example.com/simple" in text


@pytest.mark.jobs
def test_an_export_refuses_a_password_in_an_index_url(pip_offline):
    (Path.cwd() / "requirements.txt").write_text(f"--index-url https://ci:{TOKEN}@pkgs.example.com/simple\n"
                                                 "accelerate\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%%sagemaker_train --requirements requirements.txt\nprint(1)\n")]
    nbformat.write(nb, "nb.ipynb")
    done = subprocess.run([sys.executable, "-m", "sm_magic.cli.main", "export", "nb.ipynb"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("sm-magic: ") and "Traceback" not in done.stderr
    assert "holds a password, which would be written into an exported bundle" in done.stderr
    assert TOKEN not in done.stderr + done.stdout
    assert not any(TOKEN.encode() in p.read_bytes() for p in Path.cwd().rglob("*")
                   if p.is_file() and p.name not in ("requirements.txt", "nb.ipynb"))


@pytest.mark.jobs
def test_a_local_job_records_its_requirements_without_the_password(pip_offline):
    """A local job installs nothing (it runs in this environment): its requirements.txt is a record,
    kept with the password hidden."""
    reqs = Path.cwd() / "requirements.txt"
    reqs.write_text(f"--index-url https://ci:{TOKEN}@pkgs.example.com/simple\naccelerate\n")
    job = sm_magic.launch(EPOCHS_SCRIPT, requirements=reqs, name="token-3", backend="local", wait=True)
    assert job.status == "Completed"
    for path in Path.cwd().rglob("*"):
        if path.is_file() and path != reqs:
            assert TOKEN.encode() not in path.read_bytes(), path
