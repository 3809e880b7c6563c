"""The study's statistics (RESULTS.md, `make study`): the paper's three findings and their
link, per dataset and method, with 95 % intervals across seeds and a verdict each.

Every quantity is first computed per seed (each seed has its own baseline, the unregularized
model trained with that seed), then summarized across seeds by the mean and a Student-t
interval, so an interval says how much the finding moves from seed to seed. With 3 seeds the
t factor is 4.30: the intervals are wide, and a verdict needs the whole interval on one side.

Shared definitions:
- accurate strengths of a method: those whose mean test accuracy over seeds stays within
  `MAX_ACCURACY_DROP` of the baseline's; `s_robust` is the largest of them, the most robust
  model that still does the task (F1, F3 compare it with the baseline).
- the peak of an alignment curve is chosen leave-one-seed-out: seed s is scored at the
  strength where the *other* seeds' mean alignment is highest, so the gain over the baseline
  is not inflated by picking the maximum of noisy values (selection bias).

Verdicts: "holds" when the interval lies on the side the paper predicts, "does not hold"
when it lies on the other side, "inconclusive" otherwise (rules per finding below).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from analysis.calibration import COSINE, IDEAL, NOT_TESTABLE, calibration_table, is_calibrated
from analysis.groups import BASELINE_METHOD
from analysis.load import Results
from analysis.regimes import fit_regimes, label_trials

MAX_ACCURACY_DROP = 0.05
CI = 0.95
HOLDS, FAILS, UNSURE = "holds", "does not hold", "inconclusive"
# The two gradient/score pairs of the paper's experiments (docs/method.md).
PAIRS = (("pred_logit", "score"), ("logit_sum", "score_uncond"))
# The identifiable pair (docs/method.md): grad log p(y_hat|x) vs the Bayes-gradient estimate.
IDENTIFIABLE = ("log_prob", "bayes_est")
# (gradient, reference, column) whose peak F2 locates: the paper's pairs and the identifiable
# one, each by perceptual alignment ("align:") and by pixel cosine ("cos:"), and on the oracle
# sets the pixel cosine of grad log p(y_hat|x) with the exact Bayes gradient. Verdicts need
# the yardstick calibrated (analysis.calibration); otherwise they read "not testable".
YARDSTICKS = (
    *((g, ref, f"{kind}:{g}/{ref}") for g, ref in (*PAIRS, IDENTIFIABLE)
      for kind in ("align", "cos")),
    ("log_prob", IDEAL, "bayes_cosine"),
)  # fmt: skip
NULLS = ("null_input", "null_noise")
OFF_ON = "relative_off_manifold_robustness"
SIGNAL_DISTRACTOR = "relative_noise_robustness"  # signal / distractor sensitivity


def align_col(gradient: str, reference: str) -> str:
    return f"align:{gradient}/{reference}"


def rho2_col(gradient: str) -> str:
    return f"rho2:{gradient}"


def cos_col(gradient: str, reference: str) -> str:
    return f"cos:{gradient}/{reference}"


def yardstick_calibrated(calib: pd.DataFrame | None, dataset: str, reference: str, col: str):
    """Whether the yardstick behind a study column is calibrated on `dataset` (True/False; None
    when no calibration was recorded). "align:" columns use the dataset's perceptual metric."""
    if calib is None or calib.empty:
        return None
    if col.startswith("align:"):
        metrics = sorted(set(calib.loc[calib["dataset"] == dataset, "metric"]) - {COSINE})
        return is_calibrated(calib, dataset, metrics[0], reference) if metrics else None
    return is_calibrated(calib, dataset, COSINE, reference)


def testable_verdict(verdict: str, calibrated) -> str:
    return verdict if calibrated else NOT_TESTABLE


def study_frame(res: Results) -> pd.DataFrame:
    """One row per completed trial: the trial columns the study reads plus, from the final
    epoch's measures, the perceptual alignment of every measured pair (`align:<g>/<ref>`),
    rho2 of every measured gradient (`rho2:<g>`) and the cosine with the Bayes gradient."""
    trials = res.trials[res.trials["status"] == "completed"].copy()
    trials["strength"] = trials["strength"].where(trials["method"] != BASELINE_METHOD, 0.0)
    m = res.measures[res.measures["config_id"].isin(trials["config_id"])]
    m = m[m["epoch"] == m.groupby("config_id")["epoch"].transform("max")]
    parts = []
    for name, keep in ((align_col, m["metric"] != COSINE), (cos_col, m["metric"] == COSINE)):
        al = m[(m["measure"] == "alignment") & keep]
        if len(al):
            wide = al.pivot_table(index="config_id", columns=["gradient", "reference"],
                                  values="value")  # fmt: skip
            wide.columns = [name(g, r) for g, r in wide.columns]
            parts.append(wide)
    r2 = m[m["measure"] == "rho2"]
    if len(r2):
        wide = r2.pivot_table(index="config_id", columns="gradient", values="value")
        wide.columns = [rho2_col(g) for g in wide.columns]
        parts.append(wide)
    bayes = m[m["measure"] == "bayes_cosine"]
    if len(bayes):
        parts.append(
            bayes.set_index("config_id")[["value"]].rename(columns={"value": "bayes_cosine"})
        )
    out = trials.set_index("config_id")
    for part in parts:
        out = out.join(part)
    return out.reset_index()


def t_summary(values) -> tuple[float, float, float, int]:
    """(mean, ci_low, ci_high, n) of per-seed values; NaN interval with fewer than 2."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return np.nan, np.nan, np.nan, 0
    if len(v) < 2:
        return float(v[0]), np.nan, np.nan, 1
    half = stats.t.ppf(0.5 + CI / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half), len(v)


def side(lo: float, hi: float, predicted: int) -> str:
    """Verdict from an interval and the predicted sign (+1 above 0, -1 below 0)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return UNSURE
    if (predicted > 0 and lo > 0) or (predicted < 0 and hi < 0):
        return HOLDS
    if (predicted > 0 and hi < 0) or (predicted < 0 and lo > 0):
        return FAILS
    return UNSURE


def by_seed(rows: pd.DataFrame, col: str) -> pd.DataFrame:
    """strength x seed table of `col` (means where a cell has several trials)."""
    return rows.pivot_table(index="strength", columns="seed", values=col, aggfunc="mean")


def robust_strength(method_rows: pd.DataFrame, base_rows: pd.DataFrame) -> float:
    """`s_robust`: the largest strength whose mean accuracy stays within MAX_ACCURACY_DROP of
    the baseline's (NaN when none does)."""
    acc = method_rows.groupby("strength")["test_accuracy"].mean()
    ok = acc[acc >= base_rows["test_accuracy"].mean() - MAX_ACCURACY_DROP]
    return float(ok.index.max()) if len(ok) else np.nan


def _paired(rows, base, col, strength, transform) -> list[float]:
    """Per seed: transform(value at `strength`, the same seed's baseline value)."""
    at = rows[rows["strength"] == strength].groupby("seed")[col].mean()
    b = base.groupby("seed")[col].mean()
    return [transform(at[s], b[s]) for s in at.index if s in b.index]


def _row(dataset, method, quantity, values, predicted, **extra) -> dict:
    mean, lo, hi, n = t_summary(values)
    return dict(dataset=dataset, method=method, quantity=quantity, estimate=mean, ci_low=lo,
                ci_high=hi, n_seeds=n, verdict=side(lo, hi, predicted), **extra)  # fmt: skip


def _methods(df: pd.DataFrame):
    base = df[df["method"] == BASELINE_METHOD]
    for method in sorted(set(df["method"]) - {BASELINE_METHOD}):
        yield method, df[df["method"] == method], base


def finding_1(df: pd.DataFrame) -> pd.DataFrame:
    """F1, per dataset and method: rho2 and off/on at `s_robust` minus the baseline's, per
    seed. Predicted: both below 0 (robust training raises relative off-manifold robustness
    while accuracy holds). The method's verdict: holds when both intervals are below 0, does
    not hold when either lies above 0."""
    rows = []
    for dataset, d in df.groupby("dataset"):
        for method, m, base in _methods(d):
            s = robust_strength(m, base)
            for col, name in (("rho2", "rho2"), (OFF_ON, "off/on")):
                vals = _paired(m, base, col, s, lambda a, b: a - b) if np.isfinite(s) else []
                rows.append(_row(dataset, method, f"{name} change", vals, -1, strength=s))
    return pd.DataFrame(rows)


def _loso_peaks(curves: pd.DataFrame) -> dict:
    """Leave-one-seed-out: seed -> the strength where the other seeds' mean is highest."""
    out = {}
    for s in curves.columns:
        others = curves.drop(columns=s).mean(axis=1).dropna()
        if len(others):
            out[s] = float(others.idxmax())
    return out


def _bootstrap_peak(curves: pd.DataFrame, rng, n_boot: int) -> tuple[float, float]:
    """Percentile interval of the mean curve's argmax over seeds resampled with replacement."""
    seeds = np.asarray(curves.columns)
    picks = [
        float(curves[rng.choice(seeds, len(seeds))].mean(axis=1).idxmax()) for _ in range(n_boot)
    ]
    return float(np.quantile(picks, 0.025)), float(np.quantile(picks, 0.975))


def finding_2(df: pd.DataFrame, labels: pd.DataFrame, rng, n_boot: int = 1000,
              calib: pd.DataFrame | None = None) -> pd.DataFrame:  # fmt: skip
    """F2, per dataset, method and gradient/score pair: the peak of perceptual alignment.

    peak_strength: argmax over the method's strengths of the mean curve over seeds, its
    interval from resampled seeds; gain: alignment at the leave-one-seed-out peak minus the
    same seed's baseline; fall: alignment at that peak minus at the largest strength; regime
    at the peak under both criteria (majority over the peak's trials). Holds when gain > 0 and
    fall > 0 (intervals), the peak is interior (below the largest strength; the gain places
    it above the baseline) and no criterion calls the peak excessive while at least one calls
    it Bayes-aligned. Does not hold when the gain's interval is below 0, or the peak is the
    largest strength and its gain interval does not lie above 0, or both criteria call the
    peak excessive. On the oracle sets the same is done for the cosine with the exact Bayes
    gradient (reference "bayes_exact"), the yardstick that needs no estimated score.
    With `calib` (analysis.calibration.calibration_table), a yardstick that is not calibrated
    on the dataset gets the verdict "not testable"; `cosine_at_peak` is the pixel cosine of
    the same pair at the peak strength."""
    rows = []
    for dataset, d in df.groupby("dataset"):
        for g, ref, col in YARDSTICKS:
            if col not in d or d[col].isna().all():
                continue
            ok = yardstick_calibrated(calib, dataset, ref, col) if calib is not None else True
            for method, m, base in _methods(d):
                row = _peak_row(dataset, method, g, ref, col, m, base, labels, rng, n_boot)
                cos = cos_col(g, ref) if col.startswith("align:") else col
                at = m[np.isclose(m["strength"], row["peak_strength"])] if cos in m else m[:0]
                row.update(metric="cosine" if col != align_col(g, ref) else "perceptual",
                           cosine_at_peak=float(at[cos].mean()) if len(at) else np.nan,
                           calibrated=ok, verdict=testable_verdict(row["verdict"], ok))  # fmt: skip
                rows.append(row)
    return pd.DataFrame(rows)


def _peak_row(dataset, method, g, ref, col, m, base, labels, rng, n_boot) -> dict:
    curves = by_seed(m, col)  # strength x seed, robust strengths only
    base_by_seed = base.groupby("seed")[col].mean().reindex(curves.columns)
    mean_curve = curves.mean(axis=1)
    peak = float(mean_curve.idxmax())
    lo, hi = _bootstrap_peak(curves, rng, n_boot)
    loso = _loso_peaks(curves)
    top = float(curves.index.max())
    gains = [curves.at[p, s] - base_by_seed[s] for s, p in loso.items()]
    falls = [curves.at[p, s] - curves.at[top, s] for s, p in loso.items()]
    gain, fall = t_summary(gains), t_summary(falls)
    regimes = {}
    for criterion in ("paper", "scale_free"):
        at = labels[(labels["dataset"] == dataset) & (labels["method"] == method)]
        at = at[np.isclose(at["strength"].astype(float), peak)]
        regime = at[f"regime_{criterion}"].mode()
        regimes[criterion] = regime.iloc[0] if len(regime) else "unknown"
    interior = peak < top  # the left end is the baseline: the gain must beat it
    gain_side, fall_side = side(gain[1], gain[2], +1), side(fall[1], fall[2], +1)
    said = set(regimes.values())
    no_gain = np.isfinite(gain[2]) and gain_side != HOLDS  # an interval, not above 0
    if gain_side == FAILS or said == {"excessive"} or (not interior and no_gain):
        verdict = FAILS
    elif (gain_side == fall_side == HOLDS and interior and "excessive" not in said
          and "bayes_aligned" in said):  # fmt: skip
        verdict = HOLDS
    else:
        verdict = UNSURE
    return dict(
        dataset=dataset, method=method, gradient=g, reference=ref, peak_strength=peak,
        peak_ci_low=lo, peak_ci_high=hi, baseline=float(base_by_seed.mean()),
        peak_alignment=float(mean_curve[peak]), gain=gain[0], gain_ci_low=gain[1],
        gain_ci_high=gain[2], fall=fall[0], fall_ci_low=fall[1], fall_ci_high=fall[2],
        interior=interior, regime_paper=regimes["paper"],
        regime_scale_free=regimes["scale_free"], verdict=verdict,
    )  # fmt: skip


def finding_3(df: pd.DataFrame) -> pd.DataFrame:
    """F3, per dataset and method: log of (signal / distractor sensitivity at `s_robust`) over
    the same seed's baseline ratio. Predicted above 0: the robust model has become relatively
    more robust to distractor noise than to signal noise."""
    rows = []
    for dataset, d in df.groupby("dataset"):
        if d[SIGNAL_DISTRACTOR].isna().all():
            continue
        for method, m, base in _methods(d):
            s = robust_strength(m, base)
            ratio = lambda a, b: float(np.log(a / b))  # noqa: E731
            vals = _paired(m, base, SIGNAL_DISTRACTOR, s, ratio) if np.isfinite(s) else []
            rows.append(_row(dataset, method, "log signal/distractor change", vals, +1,
                             strength=s))  # fmt: skip
    return pd.DataFrame(rows)


def spearman_ci(a, b, rng, n_boot: int = 2000) -> tuple[float, float, float, int]:
    """Spearman's rank correlation over trials with a percentile interval from resampling the
    trials (pairs) with replacement."""
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = np.asarray(a)[ok], np.asarray(b)[ok]
    if len(a) < 4:
        return np.nan, np.nan, np.nan, len(a)
    est = stats.spearmanr(a, b).statistic
    idx = rng.integers(0, len(a), (n_boot, len(a)))
    boot = [stats.spearmanr(a[i], b[i]).statistic for i in idx]
    lo, hi = np.nanquantile(boot, [0.5 - CI / 2, 0.5 + CI / 2])
    return float(est), float(lo), float(hi), len(a)


def link(df: pd.DataFrame, rng, n_boot: int = 2000, calib: pd.DataFrame | None = None
         ) -> pd.DataFrame:  # fmt: skip
    """Spearman(rho2, alignment) and Spearman(off/on, alignment) per dataset and yardstick
    (both pairs; the Bayes gradient's cosine on oracle sets), over all trials and over the
    trials that keep accuracy (within MAX_ACCURACY_DROP of the baseline's mean). rho2 is that
    pair's gradient's. Predicted below 0: the more off-manifold
    robust, the better aligned."""
    rows = []
    for dataset, d in df.groupby("dataset"):
        floor = d.loc[d["method"] == BASELINE_METHOD, "test_accuracy"].mean() - MAX_ACCURACY_DROP
        for scope, rows_in in (
            ("all trials", d),
            ("accurate trials", d[d["test_accuracy"] >= floor]),
        ):
            for g, ref, col in YARDSTICKS:
                if col not in d or d[col].isna().all():
                    continue
                for name, q in (("rho2", rho2_col(g)), ("off/on", OFF_ON)):
                    if q not in d:
                        continue
                    a, b = rows_in[q].to_numpy(float), rows_in[col].to_numpy(float)
                    est, lo, hi, n = spearman_ci(a, b, rng, n_boot)
                    ok = yardstick_calibrated(calib, dataset, ref, col) if calib is not None \
                        else True
                    rows.append(dict(dataset=dataset, scope=scope, gradient=g, reference=ref,
                                     yardstick=col.split(":")[0], quantity=name, spearman=est,
                                     ci_low=lo, ci_high=hi, n=n,
                                     verdict=testable_verdict(side(lo, hi, -1), ok)))  # fmt: skip
    return pd.DataFrame(rows)


def null_references(df: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and pair: the alignment of trivial maps with the same score (the input
    image, a noise map; means over all trials with t intervals over trials) beside the
    unregularized model's and the best method's peak (means over seeds)."""
    rows = []
    for dataset, d in df.groupby("dataset"):
        base = d[d["method"] == BASELINE_METHOD]
        for g, ref in (*PAIRS, IDENTIFIABLE):
            col = align_col(g, ref)
            if col not in d:
                continue
            row = dict(dataset=dataset, gradient=g, reference=ref)
            for null in NULLS:
                ncol = align_col(null, ref)
                row[null] = d[ncol].mean() if ncol in d else np.nan
            row["baseline_model"] = t_summary(base.groupby("seed")[col].mean())[0]
            # the pixel cosine beside every perceptual figure (docs/method.md, "Calibration")
            for name, c in ((f"{n}_cosine", cos_col(n, ref)) for n in (*NULLS, g)):
                key = "baseline_model_cosine" if name == f"{g}_cosine" else name
                row[key] = (base if key.startswith("baseline") else d)[c].mean() if c in d \
                    else np.nan
            means = d.groupby(["method", "strength"])[col].mean()
            row["best_trial_mean"] = float(means.max())
            row["best_at"] = "{} {:g}".format(*means.idxmax())
            rows.append(row)
    return pd.DataFrame(rows)


def oracle_agreement(df: pd.DataFrame) -> pd.DataFrame:
    """Oracle sets only, per method: where each yardstick puts the best strength (means over
    seeds, baseline at 0 included): perceptual alignment with the estimated score and with
    the exact score, cosine with the exact Bayes gradient (highest), and the exact rho2
    (lowest among accurate strengths)."""
    rows = []
    exact = align_col("pred_logit", "exact_score")
    for dataset, d in df.groupby("dataset"):
        if "bayes_cosine" not in d or d["bayes_cosine"].isna().all():
            continue
        for method, m, base in _methods(d):
            both = pd.concat([base, m])
            means = both.groupby("strength").mean(numeric_only=True)
            s = robust_strength(m, base)
            accurate = means[means.index <= s] if np.isfinite(s) else means.iloc[:1]
            row = dict(dataset=dataset, method=method)
            row["lpips_estimated_score"] = float(means[align_col(*PAIRS[0])].idxmax())
            row["lpips_exact_score"] = float(means[exact].idxmax()) if exact in means else np.nan
            row["bayes_cosine"] = float(means["bayes_cosine"].idxmax())
            row["rho2_exact_min"] = float(accurate["rho2_exact"].idxmin())
            picks = [row[k] for k in ("lpips_estimated_score", "bayes_cosine", "rho2_exact_min")]
            row["agree"] = len(set(picks)) == 1
            row["bayes_and_rho2_agree"] = row["bayes_cosine"] == row["rho2_exact_min"]
            rows.append(row)
    return pd.DataFrame(rows)


def analyse(res: Results, rng_seed: int = 0, n_boot: int = 1000) -> dict[str, pd.DataFrame]:
    """Every study table, from the results of one or more experiment directories."""
    rng = np.random.default_rng(rng_seed)
    df = study_frame(res)
    completed = res.trials[res.trials["status"] == "completed"]
    bounds = fit_regimes(completed, res.measures, rng=rng, n_boot=n_boot)
    labels = label_trials(completed, bounds)
    labels["strength"] = labels["strength"].where(labels["method"] != BASELINE_METHOD, 0.0)
    calib = calibration_table(res.measures, res.trials)
    return {
        "trials": df,
        "boundaries": bounds,
        "calibration": calib,
        "f1": finding_1(df),
        "f2": finding_2(df, labels, rng, n_boot, calib),
        "f3": finding_3(df),
        "link": link(df, rng, n_boot, calib),
        "nulls": null_references(df),
        "oracle": oracle_agreement(df),
    }
