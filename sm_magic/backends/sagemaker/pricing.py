"""What a SageMaker training job costs: an estimate, and always said to be one.

The on-demand price of one training instance comes from the AWS Price List API
(`pricing:GetProducts`, service AmazonSageMaker, the instance's Training product in the job's
region) when the account's credentials allow it, kept for a week per region under the cache home;
else from the table in the package (price_table.json: its source and date are in the file); else
it is not known, and every figure that needs it says so. The job's cost is billable seconds x
instances x the price; its worst case, max_run x instances x the price (a spot job is billed at
most that, and usually less: SageMaker reports the saving once the job ends).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ...config.files import atomic_write, cache_home
from ...display.table_text import clock

CACHE_SECONDS = 7 * 24 * 3600
SERVICE = "AmazonSageMaker"


@dataclass(frozen=True)
class Price:
    """The on-demand price of one instance, in USD an hour, and where it came from."""

    usd_per_hour: float
    source: str   # "AWS Price List API, 2026-12-07", or the table's source and date

    def of(self, seconds: float, instances: int = 1) -> float:
        return self.usd_per_hour * seconds / 3600 * instances


def _endpoint_region(region: str) -> str:
    """The Price List API answers from three regions (as the SageMaker SDK picks them)."""
    if region.startswith(("eu", "af", "me", "il")):
        return "eu-central-1"
    if region.startswith(("ap", "cn")):
        return "ap-south-1"
    return "us-east-1"


def training_rate(price_list: list[Any], instance_type: str) -> float | None:
    """The hourly USD on-demand rate of `instance_type`'s Training product in a GetProducts
    PriceList (JSON strings or dicts); None when it holds none."""
    for item in price_list:
        data = json.loads(item) if isinstance(item, str) else item
        attributes = data.get("product", {}).get("attributes", {})
        usage = str(attributes.get("usagetype", ""))
        if attributes.get("instanceName") != instance_type or "Train" not in (
                usage + str(attributes.get("platoinstancetype", "")) + str(attributes.get("component", ""))):
            continue
        for term in data.get("terms", {}).get("OnDemand", {}).values():
            for dimension in term.get("priceDimensions", {}).values():
                usd = dimension.get("pricePerUnit", {}).get("USD")
                if usd is not None and float(usd) > 0:
                    return float(usd)
    return None


def from_api(session: Any, instance_type: str, region: str, endpoint_url: str | None = None) -> Price | None:
    """The price from the Price List API, or None when it cannot be asked (no credentials, no
    pricing:GetProducts permission, no network) or knows none."""
    try:
        from botocore.config import Config

        # A price is a nicety: a slow or absent API must not hold the launch up.
        quick = Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 1, "mode": "standard"})
        client = session.client("pricing", region_name=_endpoint_region(region), endpoint_url=endpoint_url,
                                config=quick)
        pages = client.get_paginator("get_products").paginate(ServiceCode=SERVICE, Filters=[
            {"Type": "TERM_MATCH", "Field": "instanceName", "Value": instance_type},
            {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
        ])
        for page in pages:
            rate = training_rate(page.get("PriceList", []), instance_type)
            if rate is not None:
                return Price(rate, f"AWS Price List API, {time.strftime('%Y-%m-%d')}")
    except Exception:  # botocore's errors and a missing endpoint alike: the table is asked next
        return None
    return None


def from_table(instance_type: str, region: str, path: Path | None = None) -> Price | None:
    """The price from the package's table (price_table.json, written by scripts/price_table.py
    from AWS's public offer files; or the table at `path`), or None."""
    try:
        file = path or resources.files(__package__).joinpath("price_table.json")
        table = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    rate = table.get("regions", {}).get(region, {}).get(instance_type)
    return Price(float(rate), f"{table['source']}, {table['as_of']}") if rate else None


def _cached(region: str) -> dict:
    try:
        return json.loads((cache_home() / "prices" / f"{region}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def training_price(instance_type: str, region: str, session: Any = None, *,
                   endpoint_url: str | None = None, now: float | None = None) -> Price | None:
    """The on-demand price of one `instance_type` training instance in `region`: from the cache
    (a week), the Price List API (with `session`), or the package's table; None if none knows."""
    now = time.time() if now is None else now
    entries = _cached(region)
    cached = entries.get(instance_type)
    if cached and now - cached.get("at", 0) < CACHE_SECONDS:
        return Price(cached["usd"], cached["source"])
    price = from_api(session, instance_type, region, endpoint_url) if session is not None else None
    if price is not None:
        entries[instance_type] = {"usd": price.usd_per_hour, "source": price.source, "at": now}
        try:
            atomic_write(cache_home() / "prices" / f"{region}.json", json.dumps(entries, indent=1))
        except OSError:
            pass  # a cache that cannot be written: asked again next time
        return price
    return from_table(instance_type, region)


def cost_facts(price: Price | None, billable_seconds: int | None, instances: int) -> dict | None:
    """A job's state's `extra["cost"]`: the hourly price, its source, and the cost so far of
    `billable_seconds` (None until SageMaker reports them); None without a price."""
    if price is None:
        return None
    usd = price.of(billable_seconds, instances) if billable_seconds is not None else None
    return {"usd_per_hour": price.usd_per_hour, "source": price.source, "usd": usd}


def cost_text(cost: dict | None) -> str:
    """"about $0.13 (an estimate: AWS Price List API, 2026-12-07)", or "" when not known yet."""
    if not cost or cost.get("usd") is None:
        return ""
    return f"about {money(cost['usd'])} (an estimate: {cost['source']})"


def money(usd: float) -> str:
    return f"${usd:,.2f}" if usd >= 0.01 or usd == 0 else "<$0.01"


def launch_line(price: Price | None, instance_type: str, instances: int, max_run_s: int, spot: bool) -> str:
    """What the launch costs at most, in one line: "ml.g5.xlarge x 1 at $1.41/h: at most $33.84
    (max_run 24:00:00) [AWS Price List API, 2026-12-07; an estimate]"."""
    if price is None:
        return (f"{instance_type} x {instances}: price unknown (no pricing:GetProducts access and not in "
                "sm_magic's price table); see https://aws.amazon.com/sagemaker/pricing/")
    limit = clock(max_run_s)
    spot_note = ", spot: billed less, SageMaker reports the saving when it ends" if spot else ""
    return (f"{instance_type} x {instances} at {money(price.usd_per_hour)}/h: at most "
            f"{money(price.of(max_run_s, instances))} (max_run {limit}{spot_note}) [{price.source}; an estimate]")
