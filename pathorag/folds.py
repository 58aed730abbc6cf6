"""Folds for `pathorag eval --folds`: settings chosen on some books or chapters, reported on the others.

Every weight or threshold chosen on a question set fits that set. Items are grouped into folds (by
book, or by the chapter of their first support page); for each fold, the setting with the best
objective on the *other* folds is the one reported on it ("held out"), next to the setting that is
best on all items ("tuned", which has seen the fold). A gain that shows only in the tuned column is
not a gain.

Everything here is pure: runs are lists of per-item records (as `evaluation._retrieve` and
`evaluation._answer` write them), in the same item order for every run.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

FOLD_KINDS = ("book", "chapter")


class FoldError(ValueError):
    """A fold or sweep request that cannot be run (the message says why)."""


def parse_sweep(specs: Sequence[str], fields: Mapping[str, object], index_time: set[str]) -> list[dict]:
    """`["weight_text=0.5,0.7", "fusion=rrf,weighted"]` -> every combination, as settings updates.

    Values are kept as text here; `Settings.model_validate` converts them. Settings that change what
    is stored (chunking, encoders, rendering) cannot be swept over one index.
    """
    names, values = [], []
    for spec in specs:
        name, _, listed = spec.partition("=")
        name = name.strip().lower().removeprefix("pathorag_")
        choices = [v.strip() for v in listed.split(",") if v.strip()]
        if not name or not choices:
            raise FoldError(f"--sweep {spec!r}: write NAME=VALUE[,VALUE...], e.g. weight_text=0.5,0.7")
        if name not in fields:
            raise FoldError(f"--sweep {spec!r}: no setting named {name!r}")
        if name in index_time:
            raise FoldError(
                f"--sweep {spec!r}: {name} changes what the index stores; run `pathorag eval` once per value, "
                "each with its own PATHORAG_DATA_DIR"
            )
        if name in names:
            raise FoldError(f"--sweep names {name!r} twice")
        names.append(name)
        values.append(choices)
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


def sweep_label(update: Mapping[str, object]) -> str:
    return ", ".join(f"{name}={value}" for name, value in update.items())


def cross_validate(
    runs: Mapping[str, Sequence[dict]],
    folds: Sequence[str],
    objective: Callable[[dict], float],
) -> tuple[list[str], list[str]]:
    """For each item, the run chosen without its fold (held out) and the run best on all items (tuned).

    Returns two lists of run labels, one per item. The objective is averaged over items (micro);
    ties go to the run listed first (list the defaults first).
    """
    labels = list(runs)
    if not labels:
        raise FoldError("no runs to choose from")
    totals = {label: [objective(record) for record in runs[label]] for label in labels}

    def best(excluded: str | None) -> str:
        def mean(label: str) -> float:
            kept = [value for value, fold in zip(totals[label], folds) if fold != excluded]
            return sum(kept) / len(kept) if kept else 0.0

        return max(labels, key=lambda label: (mean(label), -labels.index(label)))

    tuned = best(None)
    chosen = {fold: best(fold) for fold in dict.fromkeys(folds)}
    return [chosen[fold] for fold in folds], [tuned] * len(folds)


def pick(runs: Mapping[str, Sequence[dict]], labels: Sequence[str]) -> list[dict]:
    """The record of each item from the run named for it."""
    return [runs[label][i] for i, label in enumerate(labels)]
