"""The study's statistics (RESULTS.md, `make study`): the paper's three findings and their
link, per dataset and method, with 95 % intervals across seeds and a verdict each. Every
interval and p-value comes from `analysis.uncertainty` (the same engine as the report).

Every quantity is first computed per seed (each seed has its own baseline, the unregularized
model trained with that seed), then summarized across seeds by the mean and a Student-t
interval, so an interval says how much the finding moves from seed to seed; tables list the
per-seed values. Correlations are taken within each seed, never over pooled trials.

Shared definitions:
- accurate strengths of a method: those whose mean test accuracy over seeds stays within
  `MAX_ACCURACY_DROP` of the baseline's; `s_robust` is the largest of them, the most robust
  model that still does the task (F1, F3 compare it with the baseline).
- the peak of an alignment curve is chosen leave-one-seed-out: seed s is scored at the
  strength where the *other* seeds' mean alignment is highest, so the gain over the baseline
  is not inflated by picking the maximum of noisy values (selection bias).

Verdicts per table row: "holds" when the two-sided t-test rejects 0 (p < 0.05, i.e. the 95 %
interval excludes 0) on the side the paper predicts, "does not hold" on the other side,
"inconclusive" otherwise. The summary's verdicts (`analysis.verdicts`) are Holm-corrected
across all of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.calibration import COSINE, IDEAL, NOT_TESTABLE, calibration_table, is_calibrated
from analysis.groups import BASELINE_METHOD
from analysis.load import Results
from analysis.regimes import fit_regimes, label_trials
from analysis.uncertainty import (
    CI,
    FAILS,
    UNSURE,
    Interval,
    all_hold,
    argmax_interval,
    beyond_knob,
    per_seed_text,
    seed_spearman,
    t_interval,
    verdict,
)

MAX_ACCURACY_DROP = 0.05
EDGE = "at the edge of the grid"
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
    rho2 of every measured gradient (`rho2:<g>`), the cosine with the Bayes gradient, the
    headline gradient's rho2 under every tangent estimator (`rho2@<tangent>`, when measures
    carry a `tangent` column) and, on the oracle sets, the energy shares of the headline
    gradient (`energy_<part>`) and of the exact Bayes gradient (`bayes_energy_<part>`)."""
    trials = res.trials[res.trials["status"] == "completed"].copy()
    trials["strength"] = trials["strength"].where(trials["method"] != BASELINE_METHOD, 0.0)
    m = res.measures[res.measures["config_id"].isin(trials["config_id"])]
    m = m[m["epoch"] == m.groupby("config_id")["epoch"].transform("max")]
    tangent = m["tangent"].fillna("") if "tangent" in m else pd.Series("", index=m.index)
    parts = []
    for name, keep in ((align_col, m["metric"] != COSINE), (cos_col, m["metric"] == COSINE)):
        al = m[(m["measure"] == "alignment") & keep]
        if len(al):
            wide = al.pivot_table(index="config_id", columns=["gradient", "reference"],
                                  values="value")  # fmt: skip
            wide.columns = [name(g, r) for g, r in wide.columns]
            parts.append(wide)
    r2 = m[m["measure"] == "rho2"]
    headline_rows = r2[tangent[r2.index] == ""]  # the trial's headline estimator
    if headline_rows.empty and len(r2) and "rho2" in trials:
        # every row names its estimator: the headline one is the one trials.rho2 reports
        named = r2.assign(_tangent=tangent[r2.index]).merge(
            trials[["config_id", "rho2"]].rename(columns={"rho2": "_trial"}), on="config_id")
        gap = (named["value"] - named["_trial"]).abs().groupby(named["_tangent"]).min()
        if gap.notna().any():
            headline_rows = r2[tangent[r2.index] == gap.idxmin()]
    if len(headline_rows):
        wide = headline_rows.pivot_table(index="config_id", columns="gradient", values="value")
        wide.columns = [rho2_col(g) for g in wide.columns]
        parts.append(wide)
    per_estimator = r2[tangent[r2.index] != ""]
    if len(per_estimator):
        head = m[m["measure"] == "rho1"].groupby("config_id")["gradient"].first()
        head = head.reindex(per_estimator["config_id"]).to_numpy()
        own = per_estimator[per_estimator["gradient"].to_numpy() == head]
        wide = own.assign(tangent=tangent[own.index]).pivot_table(
            index="config_id", columns="tangent", values="value")  # fmt: skip
        wide.columns = [f"rho2@{t}" for t in wide.columns]
        parts.append(wide)
    energy = m[m["measure"].str.startswith("energy_")]
    bayes_rows = energy["gradient"] == IDEAL
    for prefix, keep in (("", ~bayes_rows), ("bayes_", bayes_rows)):
        if keep.any():
            wide = energy[keep].pivot_table(index="config_id", columns="measure", values="value")
            wide.columns = [prefix + c for c in wide.columns]
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


def by_seed(rows: pd.DataFrame, col: str) -> pd.DataFrame:
    """strength x seed table of `col` (means where a cell has several trials)."""
    return rows.pivot_table(index="strength", columns="seed", values=col, aggfunc="mean")


def robust_strength(method_rows: pd.DataFrame, base_rows: pd.DataFrame) -> float:
    """`s_robust`: the largest strength whose mean accuracy stays within MAX_ACCURACY_DROP of
    the baseline's (NaN when none does)."""
    acc = method_rows.groupby("strength")["test_accuracy"].mean()
    ok = acc[acc >= base_rows["test_accuracy"].mean() - MAX_ACCURACY_DROP]
    return float(ok.index.max()) if len(ok) else np.nan


def _paired(rows, base, col, strength, transform) -> dict:
    """Per seed: transform(value at `strength`, the same seed's baseline value)."""
    at = rows[rows["strength"] == strength].groupby("seed")[col].mean()
    b = base.groupby("seed")[col].mean()
    out = {s: transform(at[s], b[s]) for s in at.index if s in b.index}
    return {s: v for s, v in out.items() if np.isfinite(v)}


def _row(dataset, method, quantity, per_seed: dict, predicted, **extra) -> dict:
    est = t_interval(per_seed.values())
    return dict(dataset=dataset, method=method, quantity=quantity, estimate=est.estimate,
                ci_low=est.low, ci_high=est.high, n_seeds=est.n, p_value=est.p_value,
                verdict=verdict(est.estimate, est.p_value, predicted),
                per_seed=per_seed_text(per_seed), **extra)  # fmt: skip


def _methods(df: pd.DataFrame):
    base = df[df["method"] == BASELINE_METHOD]
    for method in sorted(set(df["method"]) - {BASELINE_METHOD}):
        yield method, df[df["method"] == method], base


def rho2_estimators(d: pd.DataFrame) -> list[tuple[str, str]]:
    """(column, tangent estimator) pairs F1 tests rho2 under: the exact tangents where the
    dataset has them (oracle sets), else every estimator the measures name (`rho2@<tangent>`),
    else the trials' single headline rho2 (estimator unnamed)."""
    if "rho2_exact" in d and d["rho2_exact"].notna().any():
        return [("rho2_exact", "exact")]
    named = sorted(c for c in d.columns if c.startswith("rho2@") and d[c].notna().any())
    return [(c, c.split("@", 1)[1]) for c in named] or [("rho2", "")]


def finding_1(df: pd.DataFrame) -> pd.DataFrame:
    """F1, per dataset and method: rho2 at `s_robust` minus the same seed's baseline, under
    every tangent estimator (`rho2_estimators`; role "test"), and off/on the same way (role
    "support": to first order off/on is a function of rho2 and k/d, so it is shown, not
    required). Predicted below 0; the method's verdict needs every estimator's rho2 change
    below 0 (`analysis.verdicts`)."""
    rows = []
    for dataset, d in df.groupby("dataset"):
        for method, m, base in _methods(d):
            s = robust_strength(m, base)
            quantities = [(col, "rho2 change", t, "test") for col, t in rho2_estimators(d)]
            quantities.append((OFF_ON, "off/on change", "", "support"))
            for col, name, tangent, role in quantities:
                vals = _paired(m, base, col, s, lambda a, b: a - b) if np.isfinite(s) else {}
                rows.append(_row(dataset, method, name, vals, -1, strength=s, tangent=tangent,
                                 role=role))  # fmt: skip
    return pd.DataFrame(rows)


def _loso_peaks(curves: pd.DataFrame) -> dict:
    """Leave-one-seed-out: seed -> the strength where the other seeds' mean is highest."""
    out = {}
    for s in curves.columns:
        others = curves.drop(columns=s).mean(axis=1).dropna()
        if len(others):
            out[s] = float(others.idxmax())
    return out


def finding_2(df: pd.DataFrame, labels: pd.DataFrame, rng, n_boot: int = 1000,
              calib: pd.DataFrame | None = None) -> pd.DataFrame:  # fmt: skip
    """F2, per dataset, method and yardstick: is there an interior peak of alignment, and
    (separately) which regime each criterion puts it in.

    The peak test is regime-free. peak_strength: argmax over the method's strengths of the
    mean curve over seeds, its interval from resampled seeds (`argmax_interval`); gain:
    alignment at the leave-one-seed-out peak minus the same seed's baseline; fall: that peak
    minus the largest strength. A peak at the lowest or the largest swept strength is "at the
    edge of the grid" (`position`): the curve may keep rising beyond it, so it is inconclusive
    unless the gain is below 0 (then no strength beats the baseline: does not hold). An
    interior peak holds when gain > 0 and fall > 0 (both t-tests, intersection-union: the
    larger p decides) and does not hold when either lies significantly below 0.
    regime_paper / regime_scale_free: the regime at the peak under each criterion (majority
    over the peak's trials); reported, never part of the verdict.
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


def peak_verdict(gain: Interval, fall: Interval, position: str) -> tuple[str, float, float]:
    """(verdict, signed estimate, p) of the regime-free peak test (`finding_2`)."""
    if verdict(gain.estimate, gain.p_value, +1) == FAILS:
        return FAILS, gain.estimate, gain.p_value
    if position != "interior":
        return UNSURE, np.nan, np.nan
    sign, p = all_hold([(gain.estimate, gain.p_value), (fall.estimate, fall.p_value)], +1)
    return verdict(sign, p, +1), sign, p


def _peak_row(dataset, method, g, ref, col, m, base, labels, rng, n_boot) -> dict:
    curves = by_seed(m, col)  # strength x seed
    base_by_seed = base.groupby("seed")[col].mean().reindex(curves.columns)
    mean_curve = curves.mean(axis=1)
    peak = float(mean_curve.idxmax())
    lo, hi = argmax_interval(curves, rng, n_boot, CI)
    loso = _loso_peaks(curves)
    top, bottom = float(curves.index.max()), float(curves.index.min())
    gains = {s: curves.at[p, s] - base_by_seed[s] for s, p in loso.items()}
    falls = {s: curves.at[p, s] - curves.at[top, s] for s, p in loso.items()}
    gains = {s: v for s, v in gains.items() if np.isfinite(v)}
    falls = {s: v for s, v in falls.items() if np.isfinite(v)}
    gain, fall = t_interval(gains.values()), t_interval(falls.values())
    position = ("interior" if bottom < peak < top else
                f"{EDGE} (lowest swept strength)" if peak == bottom else
                f"{EDGE} (largest swept strength)")  # fmt: skip
    v, sign, p = peak_verdict(gain, fall, position)
    regimes = {}
    for criterion in ("paper", "scale_free"):
        at = labels[(labels["dataset"] == dataset) & (labels["method"] == method)]
        at = at[np.isclose(at["strength"].astype(float), peak)]
        regime = at[f"regime_{criterion}"].mode()
        regimes[criterion] = regime.iloc[0] if len(regime) else "unknown"
    return dict(
        dataset=dataset, method=method, gradient=g, reference=ref, peak_strength=peak,
        peak_ci_low=lo, peak_ci_high=hi, position=position, interior=position == "interior",
        baseline=float(base_by_seed.mean()), peak_alignment=float(mean_curve[peak]),
        gain=gain.estimate, gain_ci_low=gain.low, gain_ci_high=gain.high,
        gain_per_seed=per_seed_text(gains), fall=fall.estimate, fall_ci_low=fall.low,
        fall_ci_high=fall.high, fall_per_seed=per_seed_text(falls), n_seeds=gain.n,
        p_value=p, signed=sign, verdict=v,
        regime_paper=regimes["paper"], regime_scale_free=regimes["scale_free"],
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
            vals = _paired(m, base, SIGNAL_DISTRACTOR, s, ratio) if np.isfinite(s) else {}
            rows.append(_row(dataset, method, "log signal/distractor change", vals, +1,
                             strength=s))  # fmt: skip
    return pd.DataFrame(rows)


LINK_TESTS = {
    "within seeds": seed_spearman,  # Spearman within each seed, t across seeds
    "beyond the knob": beyond_knob,  # the same on residuals from (method, strength) and seed
}


def link(df: pd.DataFrame, rng, n_boot: int = 1000, calib: pd.DataFrame | None = None
         ) -> pd.DataFrame:  # fmt: skip
    """Spearman(rho2, alignment) and Spearman(off/on, alignment) per dataset and yardstick
    (the pairs; the Bayes gradient's cosine on oracle sets), within each seed with a t-interval
    across seeds ("within seeds"), and the same of the deviations from every (method,
    strength) cell's and seed's mean ("beyond the knob": does rho2 predict alignment beyond
    what the strength setting explains). Over all trials and over the trials that keep
    accuracy (within MAX_ACCURACY_DROP of the baseline's mean). rho2 is that pair's
    gradient's; on the oracle sets also rho2 on the exact tangents ("rho2 exact", the headline
    gradient's). Predicted below 0: the more off-manifold robust, the better aligned. role
    "test": rho2 over all trials, the rows the summary counts; the others are "support"."""
    rows = []
    for dataset, d in df.groupby("dataset"):
        floor = d.loc[d["method"] == BASELINE_METHOD, "test_accuracy"].mean() - MAX_ACCURACY_DROP
        exact = "rho2_exact" in d and d["rho2_exact"].notna().any()
        for scope, rows_in in (
            ("all trials", d),
            ("accurate trials", d[d["test_accuracy"] >= floor]),
        ):
            for g, ref, col in YARDSTICKS:
                if col not in d or d[col].isna().all():
                    continue
                ok = yardstick_calibrated(calib, dataset, ref, col) if calib is not None \
                    else True
                quantities = [("rho2", rho2_col(g)), ("off/on", OFF_ON)]
                quantities += [("rho2 exact", "rho2_exact")] if exact else []
                for name, q in quantities:
                    if q not in d:
                        continue
                    for test, fn in LINK_TESTS.items():
                        est, per_seed = fn(rows_in, q, col, rng=rng, n_boot=n_boot, ci=CI)
                        role = "test" if (scope, name) == ("all trials", "rho2") else "support"
                        rows.append(dict(
                            dataset=dataset, scope=scope, test=test, gradient=g, reference=ref,
                            yardstick=col.split(":")[0], quantity=name, spearman=est.estimate,
                            ci_low=est.low, ci_high=est.high, n_seeds=len(per_seed),
                            p_value=est.p_value, interval=est.method,
                            per_seed=per_seed_text(per_seed), role=role, calibrated=ok,
                            verdict=testable_verdict(verdict(est.estimate, est.p_value, -1),
                                                     ok)))  # fmt: skip
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
            row["baseline_model"] = t_interval(base.groupby("seed")[col].mean()).estimate
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


ENERGIES = ("energy_signal", "energy_distractor", "energy_off")


def hypothesis_2(df: pd.DataFrame) -> pd.DataFrame:
    """Oracle sets: the headline gradient's energy shares on the signal span, the distractor
    span and off the manifold (paper Hypothesis 2: robust training moves energy from off the
    manifold and the distractor onto the signal), per method and strength; means over seeds
    with the per-seed values of the off-manifold share."""
    rows = []
    for dataset, d in df.groupby("dataset"):
        if not all(c in d for c in ENERGIES) or d["energy_signal"].isna().all():
            continue
        for (method, strength), cell in d.groupby(["method", "strength"], sort=True):
            off = cell.groupby("seed")["energy_off"].mean()
            rows.append(dict(dataset=dataset, method=method, strength=strength,
                             n_seeds=int(cell["seed"].nunique()),
                             **{c: float(cell[c].mean()) for c in ENERGIES},
                             test_accuracy=float(cell["test_accuracy"].mean()),
                             energy_off_per_seed=per_seed_text(off.to_dict())))  # fmt: skip
    return pd.DataFrame(rows)


def theorem_1(df: pd.DataFrame, rng, n_boot: int = 1000) -> pd.DataFrame:
    """Theorem 1 (rho1(sigma) -> rho2 as sigma -> 0), per dataset and method: rho1 at the
    smallest measured sigma minus rho2 of the same gradient, per seed (mean over the method's
    trials), with a t-interval across seeds, and Spearman(rho1, rho2) within seeds. rho1 has a
    small upward Monte Carlo bias (docs/method.md), so a difference near +0.01 is expected."""
    rows = []
    if "rho1" not in df or df["rho1"].isna().all():
        return pd.DataFrame(rows)
    for dataset, d in df.groupby("dataset"):
        for method, m in d.groupby("method", sort=True):
            diff = (m["rho1"] - m["rho2"]).groupby(m["seed"]).mean().dropna()
            est = t_interval(diff.to_numpy())
            rho, per_seed = seed_spearman(m, "rho1", "rho2", rng=rng, n_boot=n_boot, ci=CI)
            rows.append(dict(dataset=dataset, method=method,
                             rho1_sigma=float(m["rho1_sigma"].min()) if "rho1_sigma" in m
                             else np.nan,
                             rho1=float(m["rho1"].mean()), rho2=float(m["rho2"].mean()),
                             difference=est.estimate, ci_low=est.low, ci_high=est.high,
                             n_seeds=est.n, difference_per_seed=per_seed_text(diff.to_dict()),
                             spearman_within_seeds=rho.estimate))  # fmt: skip
    return pd.DataFrame(rows)


def theorem_2(df: pd.DataFrame) -> pd.DataFrame:
    """Theorem 2 on the oracle sets: the exact Bayes gradient lies on the signal manifold, so
    its rho2 on the exact tangents (its off-manifold energy share) is ~0 and it has no energy
    on the distractor. Means, and the largest value, over all trials' evaluation points
    (every trial scores the same Bayes classifier); beside it the models' best Bayes cosine."""
    rows = []
    for dataset, d in df.groupby("dataset"):
        if "bayes_cosine" not in d or d["bayes_cosine"].isna().all():
            continue
        row = dict(dataset=dataset, n_trials=len(d))
        for part, name in (("energy_off", "rho2_exact"), ("energy_distractor", "distractor")):
            col = f"bayes_{part}"
            have = col in d and d[col].notna().any()
            row[f"bayes_gradient_{name}"] = float(d[col].mean()) if have else np.nan
            row[f"bayes_gradient_{name}_max"] = float(d[col].max()) if have else np.nan
        means = d.groupby(["method", "strength"])["bayes_cosine"].mean()
        row["best_model_bayes_cosine"] = float(means.max())
        row["best_at"] = "{} {:g}".format(*means.idxmax())
        row["note"] = "" if np.isfinite(row["bayes_gradient_rho2_exact"]) else (
            "not recorded: these trials predate the Bayes gradient's energy rows")
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
        "hypothesis_2": hypothesis_2(df),
        "theorem_1": theorem_1(df, rng, n_boot),
        "theorem_2": theorem_2(df),
        "nulls": null_references(df),
        "oracle": oracle_agreement(df),
    }
