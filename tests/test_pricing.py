"""What a job costs: the Price List API asked through boto3, against a local stand-in that answers
GetProducts in the API's documented format (moto serves no Price List API), the week-long cache,
and the launch's worst-case line."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from sm_magic.backends.sagemaker.pricing import (
    CACHE_SECONDS,
    Price,
    from_table,
    launch_line,
    training_price,
    training_rate,
)


def product(instance, usage, kind, usd):
    """One PriceList entry as GetProducts returns it: a JSON string of product and terms."""
    sku = f"SKU{abs(hash((instance, usage))) % 10**8}"
    return json.dumps({
        "product": {"productFamily": "ML Instance", "sku": sku,
                    "attributes": {"instanceName": instance, "usagetype": usage, "platoinstancetype": kind,
                                   "regionCode": "us-east-1", "locationType": "AWS Region"}},
        "serviceCode": "AmazonSageMaker",
        "terms": {"OnDemand": {f"{sku}.JRTCKXETXF": {"priceDimensions": {f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
            "unit": "Hrs", "pricePerUnit": {"USD": f"{usd:.10f}"}, "description": f"${usd} per hour"}}}}},
    })


CATALOGUE = [product("ml.g5.xlarge", "USE1-Host:ml.g5.xlarge", "Hosting", 2.0),
             product("ml.g5.xlarge", "USE1-Train:ml.g5.xlarge", "Training", 1.5),
             product("ml.g5.xlarge", "USE1-Notebk:ml.g5.xlarge", "Notebook", 1.9)]


class StandIn(BaseHTTPRequestHandler):
    requests: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        StandIn.requests.append((self.headers.get("X-Amz-Target"), body))
        wanted = {f["Field"]: f["Value"] for f in body.get("Filters", [])}
        found = [p for p in CATALOGUE
                 if all(json.loads(p)["product"]["attributes"].get(k) == v for k, v in wanted.items())]
        data = json.dumps({"FormatVersion": "aws_v1", "PriceList": found}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def price_list(monkeypatch, tmp_path):
    monkeypatch.setenv("SM_MAGIC_CACHE", str(tmp_path / "cache"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    StandIn.requests = []
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def session():
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")


def test_the_training_price_comes_from_the_price_list_api_and_is_kept_a_week(price_list):
    server, url = price_list
    price = training_price("ml.g5.xlarge", "us-east-1", session(), endpoint_url=url)
    assert price == Price(1.5, f"AWS Price List API, {time.strftime('%Y-%m-%d')}")  # Training, not Hosting
    target, body = StandIn.requests[0]
    assert target == "AWSPriceListService.GetProducts" and body["ServiceCode"] == "AmazonSageMaker"
    assert {"Type": "TERM_MATCH", "Field": "regionCode", "Value": "us-east-1"} in body["Filters"]
    server.shutdown()  # the API gone: the cache answers for a week, then nothing does
    server.server_close()
    assert training_price("ml.g5.xlarge", "us-east-1", session(), endpoint_url=url) == price
    later = time.time() + CACHE_SECONDS + 60
    assert training_price("ml.g5.xlarge", "us-east-1", session(), endpoint_url=url, now=later) is None


def test_an_instance_the_api_does_not_price_or_no_api_at_all_is_unknown_never_an_error(price_list):
    _, url = price_list
    assert training_price("ml.p5.48xlarge", "us-east-1", session(), endpoint_url=url) is None
    assert training_price("ml.g5.xlarge", "eu-west-1", session(), endpoint_url="http://127.0.0.1:9") is None
    assert training_price("ml.g5.xlarge", "us-east-1", None) is None  # no credentials: not asked


def test_a_price_list_without_a_training_product_has_no_training_rate():
    hosting_only = [product("ml.g5.xlarge", "USE1-Host:ml.g5.xlarge", "Hosting", 2.0)]
    assert training_rate(hosting_only, "ml.g5.xlarge") is None
    assert training_rate(CATALOGUE, "ml.g5.2xlarge") is None


def test_the_form_shows_the_price_this_machine_knows_beside_the_instance_type(price_list):
    from sm_magic.config.model import TrainConfig
    from sm_magic.widgets.form import ConfigForm

    form = ConfigForm(TrainConfig(ec2_instance_type="ml.g5.xlarge"), None)
    assert "$" not in form.instance_specs.value  # nothing known yet: the form asks no API
    training_price("ml.g5.xlarge", "us-east-1", session(), endpoint_url=price_list[1])  # a launch's lookup
    form = ConfigForm(TrainConfig(ec2_instance_type="ml.g5.xlarge"), None)
    assert f"1 x A10G, 24 GiB GPU memory; $1.50/h in us-east-1 (AWS Price List API, {time.strftime('%Y-%m-%d')}; " \
           "an estimate)" in form.instance_specs.value
    form.controls["region"].value = "eu-west-1"
    assert "$" not in form.instance_specs.value


def test_the_launch_line_gives_the_worst_case_and_says_it_is_an_estimate():
    price = Price(1.5, "AWS Price List API, 2026-12-07")
    assert launch_line(price, "ml.g5.xlarge", 2, 86400, spot=False) == (
        "ml.g5.xlarge x 2 at $1.50/h: at most $72.00 (max_run 24:00:00) [AWS Price List API, 2026-12-07; an estimate]")
    assert "spot: billed less, SageMaker reports the saving when it ends" in launch_line(
        price, "ml.g5.xlarge", 1, 3600, spot=True)
    assert launch_line(None, "ml.g5.xlarge", 1, 3600, spot=False).startswith("ml.g5.xlarge x 1: price unknown")
    assert price.of(331, 1) == pytest.approx(0.1379, abs=1e-4)  # the guide's 331 billable seconds


def test_the_fallback_table_is_built_from_the_public_offer_file_and_names_it(tmp_path):
    """scripts/price_table.py over an offer file in the bulk format (products by SKU, terms by SKU)."""
    import subprocess
    import sys
    from pathlib import Path

    entries = [json.loads(p) for p in CATALOGUE]
    offer = {"formatVersion": "v1.0", "offerCode": "AmazonSageMaker", "publicationDate": "2026-11-30T18:00:00Z",
             "products": {e["product"]["sku"]: e["product"] for e in entries},
             "terms": {"OnDemand": {e["product"]["sku"]: e["terms"]["OnDemand"] for e in entries}}}
    (tmp_path / "index.json").write_text(json.dumps(offer))
    script = Path(__file__).resolve().parents[1] / "scripts" / "price_table.py"
    out = subprocess.run([sys.executable, str(script), "--offer-file", f"us-east-1={tmp_path / 'index.json'}",
                          "--out", str(tmp_path / "table.json")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    table = json.loads((tmp_path / "table.json").read_text())
    assert table["regions"] == {"us-east-1": {"ml.g5.xlarge": 1.5}} and table["as_of"] == "2026-11-30"
    price = from_table("ml.g5.xlarge", "us-east-1", tmp_path / "table.json")
    assert price == Price(1.5, "AWS Price List bulk offer files for AmazonSageMaker (index.json), 2026-11-30")
    assert from_table("ml.g5.xlarge", "eu-west-1", tmp_path / "table.json") is None


SCRIPT = "print(\"epoch 0: {'loss': 1.0}\")\n"


@pytest.mark.jobs
def test_a_launch_shows_its_worst_case_max_cost_refuses_one_above_it_and_the_job_shows_its_cost(
        aws, price_list, monkeypatch, capsys):
    """SageMaker on moto, the Price List API on the stand-in (boto3's per-service endpoint)."""
    import io

    import sm_magic
    from sm_magic.backends.base import BackendError
    from sm_magic.jobs.registry import Registry
    from sm_magic.plan.planner import dry_run
    from sm_magic.widgets.progress import header_html
    from sm_magic.widgets.text import StreamPrinter

    from helpers.aws_moto import ROLE_NAME

    monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", price_list[1])
    options = dict(backend="sagemaker", instance_type="ml.g5.xlarge", iam_role_name=ROLE_NAME)
    today = time.strftime("%Y-%m-%d")
    text = dry_run(SCRIPT, **options)
    assert (f"Cost: ml.g5.xlarge x 1 at $1.50/h: at most $36.00 (max_run 24:00:00) [AWS Price List API, {today}; "
            "an estimate]") in text

    s3 = aws.client("s3")
    keys = lambda: sorted(o["Key"] for b in s3.list_buckets()["Buckets"]  # noqa: E731
                          for o in s3.list_objects_v2(Bucket=b["Name"]).get("Contents", []))
    before = keys()
    with pytest.raises(BackendError, match=r"max_cost 10 USD: this launch may cost up to 36\.00 USD .*Nothing was "
                                           r"uploaded; lower max_run"):
        sm_magic.launch(SCRIPT, max_cost=10, name="costly-1", **options)
    assert keys() == before and Registry().get("costly-1") is None

    job = sm_magic.launch(SCRIPT, max_cost=10, max_run=3600, name="costly-2", **options)
    assert "cost: ml.g5.xlarge x 1 at $1.50/h: at most $1.50 (max_run 1:00:00)" in capsys.readouterr().out
    aws.drive(job.name, "Training")
    aws.drive(job.name, "Completed")
    aws.training_job(job.name).billable_time_in_seconds = 331
    state = job.describe()
    assert state.extra["cost"]["usd"] == pytest.approx(1.5 * 331 / 3600)
    assert sm_magic.compare([job])["cost_usd"].iloc[0] == pytest.approx(0.1379, abs=1e-4)
    assert "&asymp; $0.14</span>" in header_html(job.snapshot())  # the widget's header, and the --wait stream:
    out = io.StringIO()
    StreamPrinter(out)(job.snapshot())
    assert f"Cost: about $0.14 (an estimate: AWS Price List API, {today})" in out.getvalue()

    # The listings: the registry keeps the ended job's cost, so they read no log and ask no API.
    from sm_magic.cli.main import main as sm_magic_cli
    from sm_magic.jobs.lookup import list_jobs

    assert [row.cost for row in list_jobs() if row.record.name == "costly-2"] == [pytest.approx(0.1379, abs=1e-4)]
    capsys.readouterr()
    assert sm_magic_cli(["jobs", "--wide"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert "COST" in listing[0] and "~$0.14" in next(line for line in listing if line.startswith("costly-2")).split()
