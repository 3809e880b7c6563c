"""The calibration section of `pags analyze`'s report and of RESULTS.md: the calibration table
per dataset, the headline each dataset gets and why, and every yardstick's peak with its
pixel cosine beside it (analysis.calibration, analysis.yardsticks)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.results.calibration import BAYES_EST, COSINE, LADDER, LADDER_SNRS, probe_key

PROBE_LABELS = {probe_key(LADDER, s): f"SNR {s:g}" for s in LADDER_SNRS} | {
    "negated": "-target", "null_input": "input", "null_noise": "noise",
    "null_other_point": "other point", "null_random_init": "random init",
    "bayes_exact": "exact Bayes grad",
}  # fmt: skip
RULE = (
    "A yardstick (metric, target) is calibrated on a dataset iff its value falls strictly down "
    "the noise ladder (target + Gaussian noise at amplitude SNR 3, 1, 0.3 against the target), "
    "the negated target scores below every null (the centred input, N(0, I) noise, another "
    "point's target, a randomly initialised model's grad log p(y|x)), and on the oracle sets "
    "the exact Bayes gradient grad log p(y|x) scores above every null. Probes are taken at the "
    "true labels, once per artifact set (docs/method.md, 'Calibration'). Verdicts resting on an "
    "uncalibrated yardstick read 'not testable'."
)


def display_table(calib: pd.DataFrame) -> pd.DataFrame:
    """The calibration table with readable column names and pass/fail."""
    out = calib.rename(columns=PROBE_LABELS).copy()
    out["calibrated"] = np.where(calib["calibrated"], "pass", "FAIL")
    return out.rename(columns={"reference": "target"})


def headline_sentences(calib: pd.DataFrame, trials: pd.DataFrame) -> list[str]:
    """Per dataset: the headline the trials used and why (the headline rule, docs/method.md)."""
    out = []
    for dataset, rows in calib.groupby("dataset", sort=True):
        perceptual = sorted(set(rows["metric"]) - {COSINE})
        passing = rows[rows["calibrated"] & (rows["metric"] != COSINE)]
        t = trials[trials["dataset"] == dataset]
        cols = ["alignment_gradient", "alignment_reference", "alignment_metric"]
        used = t[cols].value_counts().index[0] if len(t) and set(cols) <= set(t) else None
        head = (f"{dataset}: headline `alignment` = {used[2]} of {used[0]} with {used[1]}"
                if used else f"{dataset}: no trial")  # fmt: skip
        if passing.empty:
            why = (f"no perceptual metric ({', '.join(perceptual) or 'none measured'}) calibrates "
                   f"against any target, so the headline is the pixel cosine of grad log "
                   f"p(y_hat|x) with the Bayes-gradient estimate ({BAYES_EST})")  # fmt: skip
        else:
            why = "calibrated perceptual yardsticks: " + ", ".join(
                f"{r.metric} against {r.reference}" for r in passing.itertuples())
        out.append(f"{head}; {why}.")
    return out


def estimate_sentences(measures: pd.DataFrame, trials: pd.DataFrame) -> list[str]:
    """Oracle sets: the Bayes-gradient estimate's mean cosine with the exact Bayes gradient."""
    est = measures[measures["measure"] == "bayes_estimate_cosine"] if len(measures) else measures
    if est is None or est.empty:
        return []
    est = est.merge(trials[["config_id", "dataset"]], on="config_id")
    out = []
    for dataset, rows in est.groupby("dataset", sort=True):
        v = rows.groupby("reference")["value"].mean()
        n = int(rows["n"].iloc[0])
        text = (f"{dataset}: the Bayes-gradient estimate score(x|y) - score(x) has mean cosine "
                f"{v.get('bayes_exact', np.nan):.3f} with the exact grad log p(y|x) at the {n} "
                f"clean evaluation points")  # fmt: skip
        if "bayes_exact_smoothed" in v:
            text += (f" ({v['bayes_exact_smoothed']:.3f} with the exact gradient of the "
                     f"sigma-smoothed posterior it estimates)")  # fmt: skip
        out.append(text + ".")
    return out


def calibration_section(doc, calib: pd.DataFrame, yardsticks: pd.DataFrame,
                        trials: pd.DataFrame, measures: pd.DataFrame | None = None
                        ) -> None:  # fmt: skip
    """Write the section into `doc` (analysis.document.Document): the rule, a table per
    dataset, the headline each dataset gets, the Bayes-estimate cosines and (when given) the
    peaks by yardstick. Shared by `pags analyze` and RESULTS.md."""
    doc.heading("Calibration of the alignment yardsticks")
    if calib.empty:
        doc.para("No calibration rows in measures.parquet (results from before calibration): "
                 "every alignment verdict reads 'not testable'.")  # fmt: skip
        return
    doc.para(RULE)
    for dataset, rows in calib.groupby("dataset", sort=True):
        doc.para(f"{dataset}:")
        doc.table(display_table(rows.drop(columns="dataset")))
    doc.bullets(headline_sentences(calib, trials))
    if measures is not None:
        doc.bullets(estimate_sentences(measures, trials))
    if len(yardsticks):
        doc.heading("Peak alignment by yardstick", level=3)
        doc.para("Means over seeds; baseline = the unregularized model; cosine_at_peak = the "
                 "pixel cosine of the same pair at the peak strength.")  # fmt: skip
        doc.table(yardsticks)
