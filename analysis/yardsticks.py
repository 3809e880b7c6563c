"""Every alignment yardstick of a sweep side by side, and which verdicts may rest on which
(docs/method.md, "Calibration"): the report's calibration section.

A yardstick is (gradient, reference, metric) from measures.parquet's alignment rows. For each
method group and yardstick: the baseline's value, the strength with the highest mean value,
the value there and the pixel cosine of the same pair there (so no perceptual figure stands
without its cosine), and whether the yardstick is calibrated on the dataset
(`analysis.calibration`). A peak found with an uncalibrated yardstick reads "not testable".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.calibration import COSINE, NOT_TESTABLE, calibration_table, is_calibrated
from analysis.groups import BASELINE_METHOD

# (gradient, reference) pairs the report compares: the paper's two, the identifiable one at the
# predicted class and at the true label, and on the oracle sets the exact references.
PAIRS = (
    ("pred_logit", "score"), ("logit_sum", "score_uncond"), ("log_prob", "bayes_est"),
    ("log_prob_label", "bayes_est_label"), ("log_prob", "bayes_exact"),
    ("pred_logit", "exact_score"),
)  # fmt: skip
COLUMNS = ["dataset", "model", "method", "gradient", "reference", "metric", "calibrated",
           "baseline", "peak_strength", "peak_value", "cosine_at_peak", "finding"]  # fmt: skip


def final_alignment(trials: pd.DataFrame, measures: pd.DataFrame) -> pd.DataFrame:
    """Completed trials' alignment rows at their last epoch, one per (trial, pair, metric),
    with dataset, model, method and strength (0 for the baseline)."""
    done = trials[trials["status"] == "completed"]
    m = measures[(measures["measure"] == "alignment")
                 & measures["config_id"].isin(done["config_id"])]  # fmt: skip
    if m.empty:
        return m.assign(dataset=[], model=[], method=[], strength=[])
    m = m[m["epoch"] == m.groupby("config_id")["epoch"].transform("max")]
    keys = done[["config_id", "dataset", "model", "method", "strength"]].copy()
    keys["strength"] = keys["strength"].where(keys["method"] != BASELINE_METHOD, 0.0)
    return m.merge(keys, on="config_id")


def yardstick_table(
    trials: pd.DataFrame, measures: pd.DataFrame, calib: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per (dataset, model, method, pair, metric) (module docstring)."""
    calib = calibration_table(measures, trials) if calib is None else calib
    rows = final_alignment(trials, measures)
    out = []
    for (dataset, model), d in rows.groupby(["dataset", "model"], sort=True):
        base = d[d["method"] == BASELINE_METHOD]
        for method in sorted(set(d["method"]) - {BASELINE_METHOD}):
            both = pd.concat([base, d[d["method"] == method]])
            for g, ref in PAIRS:
                pair = both[(both["gradient"] == g) & (both["reference"] == ref)]
                means = pair.groupby(["metric", "strength"])["value"].mean()
                for metric in sorted(set(pair["metric"])):
                    curve = means[metric]
                    peak = float(curve.idxmax())
                    cos = means[COSINE] if COSINE in means.index.get_level_values(0) else None
                    ok = is_calibrated(calib, dataset, metric, ref)
                    out.append(dict(
                        dataset=dataset, model=model, method=method, gradient=g, reference=ref,
                        metric=metric, calibrated=ok,
                        baseline=float(curve.get(0.0, np.nan)), peak_strength=peak,
                        peak_value=float(curve[peak]),
                        cosine_at_peak=float(cos.get(peak, np.nan)) if cos is not None else np.nan,
                        finding=_finding(ok, metric, ref, peak, curve),
                    ))  # fmt: skip
    return pd.DataFrame(out, columns=COLUMNS)


def _finding(ok: bool | None, metric: str, ref: str, peak: float, curve: pd.Series) -> str:
    if ok is False:
        return f"{NOT_TESTABLE}: {metric} is not calibrated against {ref}"
    if ok is None:
        return f"{NOT_TESTABLE}: {metric} against {ref} was not calibrated (older results)"
    where = "the baseline" if peak == 0 else f"strength {peak:.3g}"
    top = "" if peak < curve.index.max() else " (largest swept strength: not bracketed)"
    return f"peak at {where}{top}"


def headline_testable(calib: pd.DataFrame, trials: pd.DataFrame, dataset: str, metric: str
                      ) -> tuple[bool, str]:  # fmt: skip
    """Whether findings on a dataset's trial `alignment` (metric `metric`) may be stated: its
    (metric, reference) must be calibrated. (ok, reason when not)."""
    refs = trials.loc[(trials["dataset"] == dataset) & (trials["alignment_metric"] == metric),
                      "alignment_reference"] if "alignment_reference" in trials else []  # fmt: skip
    ref = str(pd.Series(refs).mode().iloc[0]) if len(refs) else ""
    ok = is_calibrated(calib, dataset, metric, ref)
    if ok:
        return True, ""
    if ok is None:
        return False, f"{metric} against {ref or 'its reference'} was not calibrated"
    return False, f"{metric} is not calibrated against {ref} on {dataset}"
