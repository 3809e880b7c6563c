"""The study's summary verdicts: one line per (finding, dataset, method or pair), each from one
test with a signed estimate and a two-sided p-value (`analysis.study` tables), then Holm's
correction across every testable line (`analysis.uncertainty.holm`), so that "holds" in the
summary allows for the number of verdicts it shares the page with.

Rules per finding (docs in `analysis.study`):
- F1: rho2 change at `s_robust` below 0 under every tangent estimator present (intersection-
  union: the largest p decides); off/on is shown beside it, not tested.
- F2: the regime-free peak test; the regime each criterion assigns is reported, not tested.
- F3: log signal/distractor change above 0.
- link: Spearman(rho2, alignment) below 0, within seeds and beyond the strength knob, over all
  trials, for every yardstick (not testable where the yardstick fails calibration).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.calibration import NOT_TESTABLE
from analysis.document import cell
from analysis.results.methods import STRENGTH_SYMBOL
from analysis.uncertainty import FAILS, HOLDS, UNSURE, all_hold, holm, verdict

VERDICTS = (HOLDS, FAILS, UNSURE, NOT_TESTABLE)
COLUMNS = ["finding", "dataset", "method / pair", "verdict", "verdict uncorrected", "p",
           "p (Holm)", "numbers"]  # fmt: skip


def interval(est, lo, hi) -> str:
    if not np.isfinite(lo):
        return f"{cell(est) or 'n/a'} (no interval)"
    return f"{cell(est)} [{cell(lo)}, {cell(hi)}]"


def strength(method: str, value: float) -> str:
    return f"{STRENGTH_SYMBOL.get(method, 'strength')}={cell(value)}"


def _lines(t: dict[str, pd.DataFrame]):
    """(finding, dataset, who, signed estimate, p, predicted, testable, numbers) per verdict."""
    f1, f2, f3, link = (t[k] for k in ("f1", "f2", "f3", "link"))
    f1 = f1 if len(f1) else pd.DataFrame(columns=["dataset", "method"])
    role = f1["role"] if "role" in f1 else pd.Series("test", index=f1.index)
    for (dataset, method), r in f1.groupby(["dataset", "method"], sort=False):
        tests = r[role[r.index] == "test"]
        signed, p = all_hold(zip(tests["estimate"], tests["p_value"], strict=True), -1)
        figures = "; ".join(
            f"{x.quantity}{f' ({x.tangent} tangents)' if getattr(x, 'tangent', '') else ''}"
            f"{' (support)' if role[i] == 'support' else ''} "
            f"{interval(x.estimate, x.ci_low, x.ci_high)}" for i, x in zip(r.index, r.itertuples(),
                                                                          strict=True)
        )  # fmt: skip
        yield ("F1 rho2 falls (off-manifold robustness rises)", dataset, method, signed, p, -1,
               True, f"at {strength(method, r['strength'].iloc[0])}: {figures}")  # fmt: skip
    for x in f2.itertuples() if len(f2) else ():
        where = "" if x.position == "interior" else f" ({x.position})"
        yield (f"F2 interior peak ({x.gradient} / {x.reference}, {x.metric})", x.dataset,
               x.method, x.signed, x.p_value, +1, x.verdict != NOT_TESTABLE,
               f"peak {strength(x.method, x.peak_strength)}{where}, gain "
               f"{interval(x.gain, x.gain_ci_low, x.gain_ci_high)}, fall "
               f"{interval(x.fall, x.fall_ci_low, x.fall_ci_high)}")  # fmt: skip
    for x in f3.itertuples() if len(f3) else ():
        yield ("F3 distractor vs signal", x.dataset, x.method, x.estimate, x.p_value, +1, True,
               f"at {strength(x.method, x.strength)}: log ratio change "
               f"{interval(x.estimate, x.ci_low, x.ci_high)}")  # fmt: skip
    for x in link[link["role"] == "test"].itertuples() if len(link) else ():
        yield (f"link {x.test}: rho2 vs alignment ({x.yardstick})", x.dataset,
               f"{x.gradient} / {x.reference}", x.spearman, x.p_value, -1,
               x.verdict != NOT_TESTABLE,
               f"Spearman {interval(x.spearman, x.ci_low, x.ci_high)}, "
               f"{x.n_seeds} seeds ({x.per_seed})")  # fmt: skip


def verdict_table(t: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One line per verdict: the verdict after Holm's correction across all testable lines,
    the uncorrected one, both p-values and the deciding figures."""
    lines = list(_lines(t))
    if not lines:
        return pd.DataFrame(columns=COLUMNS)
    finding, dataset, who, signed, p, predicted, testable, numbers = map(list, zip(*lines,
                                                                                  strict=True))
    p = np.asarray(p, dtype=float)
    family = np.asarray(testable) & np.isfinite(p)
    adjusted = np.full_like(p, np.nan)
    adjusted[family] = holm(p[family])
    rows = []
    for i in range(len(lines)):
        raw = verdict(signed[i], p[i], predicted[i]) if testable[i] else NOT_TESTABLE
        final = verdict(signed[i], adjusted[i], predicted[i]) if testable[i] else NOT_TESTABLE
        rows.append((finding[i], dataset[i], who[i], final, raw, p[i], adjusted[i], numbers[i]))
    return pd.DataFrame(rows, columns=COLUMNS)


def summary_counts(verdicts: pd.DataFrame) -> str:
    """The whole summary in one sentence: how many verdicts of each kind."""
    counts = verdicts["verdict"].value_counts()
    family = int(verdicts["p (Holm)"].notna().sum())
    parts = ", ".join(f"{int(counts.get(v, 0))} {v}" for v in VERDICTS)
    return (f"{len(verdicts)} verdicts: {parts} (Holm's correction across the {family} "
            "testable ones with a p-value)")  # fmt: skip


def summary_lines(verdicts: pd.DataFrame) -> list[str]:
    """Per finding and dataset: how many methods (or pairs) each verdict got, in words."""
    lines = []
    for (finding, dataset), rows in verdicts.groupby(["finding", "dataset"], sort=False):
        counts = rows["verdict"].value_counts()
        parts = [f"{counts[v]} {v}" for v in VERDICTS if v in counts]
        who = {v: ", ".join(rows.loc[rows["verdict"] == v, "method / pair"])
               for v in counts.index}  # fmt: skip
        detail = "; ".join(f"{v}: {who[v]}" for v in VERDICTS if v in who)
        lines.append(f"{finding}, {dataset}: {', '.join(parts)} ({detail})")
    return lines
