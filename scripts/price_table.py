"""Write sm_magic/backends/sagemaker/price_table.json, the on-demand training prices sm_magic falls back on when the
Price List API cannot be asked, from AWS's public bulk offer file for SageMaker (no credentials
needed; one file per region).

    python scripts/price_table.py [--regions us-east-1,eu-west-1] [--offer-file REGION=PATH ...]

The table names its source (the offer files' URLs) and their publication date, and every figure
sm_magic shows from it says so. --offer-file reads a file already downloaded instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "sm_magic" / "backends" / "sagemaker" / "price_table.json"
URL = "https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/AmazonSageMaker/current/{region}/index.json"
REGIONS = ("us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1", "ap-northeast-1", "ap-southeast-2")


def training_prices(offer: dict) -> dict[str, float]:
    """{instance type: USD an hour} of the offer file's on-demand Training products."""
    prices = {}
    on_demand = offer.get("terms", {}).get("OnDemand", {})
    for sku, product in offer.get("products", {}).items():
        attributes = product.get("attributes", {})
        instance = attributes.get("instanceName", "")
        if not instance.startswith("ml.") or "Train" not in attributes.get("usagetype", ""):
            continue
        for term in on_demand.get(sku, {}).values():
            for dimension in term.get("priceDimensions", {}).values():
                usd = float(dimension.get("pricePerUnit", {}).get("USD", 0))
                if usd > 0:
                    prices[instance] = usd
    return dict(sorted(prices.items()))


def table(offers: dict[str, tuple[str, dict]]) -> dict:
    """The table from {region: (where the offer file came from, its JSON)}."""
    dates = sorted({offer.get("publicationDate", "")[:10] for _, offer in offers.values()})
    return {"source": "AWS Price List bulk offer files for AmazonSageMaker (" +
                      ", ".join(where for where, _ in offers.values()) + ")",
            "as_of": dates[-1] if dates else "",
            "regions": {region: training_prices(offer) for region, (_, offer) in sorted(offers.items())}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regions", default=",".join(REGIONS))
    parser.add_argument("--offer-file", action="append", default=[], metavar="REGION=PATH")
    parser.add_argument("--out", default=str(OUTPUT))
    args = parser.parse_args(argv)
    offers = {}
    for item in args.offer_file:
        region, _, path = item.partition("=")
        offers[region] = (Path(path).name, json.loads(Path(path).read_text(encoding="utf-8")))
    if not args.offer_file:
        for region in args.regions.split(","):
            url = URL.format(region=region)
            with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 (AWS's public URL)
                offers[region] = (url, json.load(response))
    result = table(offers)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {sum(map(len, result['regions'].values()))} prices, as of {result['as_of']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
