"""Which way a metric is better: "max" for accuracy-like names, "min" for loss-like ones.

One rule for every display that picks a "best" value (sm_magic.compare, the progress table's best
rows), so a job's best accuracy is the same row everywhere. A name is read as words (split at
non-alphanumerics and camelCase, so `val_acc`, `eval/loss`, `valAccuracy`, `mAP`, `top1_err` and
`rouge1` all read), and the first rule a word meets decides:

1. loss-like words (loss, error, perplexity, mse, wer, nll, ...) mean "min": `iou_loss` is a loss;
2. throughput (`samples_per_second`, `throughput`) means "max";
3. time-like words (time, seconds, latency, runtime) mean "min";
4. accuracy-like words (acc, f1, precision, recall, auc, bleu, rouge, map, iou, score, ...) "max";
5. anything else: "min" (DEFAULT); most metrics a training loop invents are losses or costs
   (`kl`, `grad_norm`, `val_ce`). `best={"name": "max"}` overrides any of these.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from ..errors import UsageProblem

DEFAULT = "min"
DIRECTIONS = ("max", "min")

_LOSS = frozenset({
    "loss", "losses", "error", "errors", "err", "perplexity", "ppl", "mse", "mae", "rmse", "mape", "smape",
    "nll", "ce", "xent", "wer", "cer", "ter", "bpd", "bpc", "fid", "kl", "regret", "distance",
})
_TIME = frozenset({"time", "second", "seconds", "secs", "sec", "latency", "runtime", "duration"})
_ACCURACY = frozenset({
    "acc", "accuracy", "f1", "f1score", "fscore", "precision", "prec", "recall", "auc", "auroc", "auprc", "roc",
    "bleu", "rouge", "rougel", "rougelsum", "meteor", "map", "miou", "iou", "dice", "score", "r2", "top1", "top5",
    "correct", "ndcg", "mrr", "hits", "em", "exact", "reward", "return", "throughput",
})


class MetricDirectionError(UsageProblem, ValueError):
    """A `best=` override that is not {"metric": "max" | "min"}."""


def _words(name: str) -> set[str]:
    """`valAccuracy_top1` -> {"valaccuracy", "val", "accuracy", "top1", "top"}: the lowercased
    parts between non-alphanumerics, each camelCase part, and each without its trailing digits."""
    parts = set(re.split(r"[^a-z0-9]+", name.lower()))
    parts.update(p.lower() for p in re.split(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])", name))
    parts.update(p.rstrip("0123456789") for p in list(parts))
    parts.discard("")
    return parts


def direction(name: str, overrides: Mapping[str, str] | None = None) -> str:
    """"max" or "min": which way `name` is better (see the module's rules); `overrides` first."""
    if overrides and name in overrides:
        return overrides[name]
    words = _words(name)
    if words & _LOSS:
        return "min"
    if "throughput" in words or ("per" in words and words & (_TIME | {"s"})):
        return "max"
    if words & _TIME:
        return "min"
    if words & _ACCURACY:
        return "max"
    return DEFAULT


def check_overrides(best: Mapping[str, str] | None, metrics: Iterable[str] = ()) -> dict[str, str]:
    """`best` as {metric: "max" | "min"}; a value that is neither, or (when `metrics` names any)
    a metric none of them is, is a MetricDirectionError naming what is there."""
    if best is None:
        return {}
    if not isinstance(best, Mapping):
        raise MetricDirectionError(f"best= takes a dict such as {{'loss': 'min', 'accuracy': 'max'}}, "
                                   f"not {type(best).__name__}")
    checked = {}
    for name, way in best.items():
        word = str(way).strip().lower()
        if word not in DIRECTIONS:
            raise MetricDirectionError(f"best={{{name!r}: {way!r}}}: say 'max' (higher is better) or 'min' "
                                       "(lower is better)")
        checked[str(name)] = word
    known = list(metrics)
    unknown = [name for name in checked if name not in known]
    if known and unknown:
        raise MetricDirectionError(f"best= names {', '.join(unknown)}, which none of these jobs logs; "
                                   f"their metrics: {', '.join(known)}")
    return checked
