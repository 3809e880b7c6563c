"""`write_report`: everything `pags analyze RESULTS_DIR` produces, from the results tables alone.

Output directory (default `<results_dir>/report/`):
  report.md, report.html (self-contained, figures as base64 PNG), figures/*.png,
  regimes.parquet (one row per dataset/model/method/criterion/boundary: estimate, ci_low,
  ci_high, reason, ...; see `analysis.regimes.fit_regimes`), trial_regimes.parquet,
  peak_alignment.parquet, correlation.parquet (off/on vs alignment), rho2_correlation.parquet
  (rho2 vs alignment), boundaries_by_eps.parquet (the boundaries refitted at every measured
  step size; see `analysis.step_sizes`), noise_robustness.parquet.

Degenerate results (one trial, all diverged, one strength, NaNs, no baseline) still give a
report; whatever could not be computed is listed with its reason. Only unreadable results
(`ResultsError`) stop it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis import findings
from analysis.alignment import RHO2, alignment_correlation, peak_alignment
from analysis.calibration import NOT_TESTABLE, calibration_table
from analysis.calibration_report import calibration_section
from analysis.document import Document
from analysis.gallery import gallery_figure
from analysis.groups import split_groups
from analysis.load import Results, load_results
from analysis.noise import noise_robustness
from analysis.plots import noise_figure, regime_figure
from analysis.quality import artifact_quality
from analysis.regimes import Criteria, criteria_table, fit_regimes, label_trials
from analysis.report_tables import (
    BOUNDARY_COLUMNS,
    CORRELATION_COLUMNS,
    EPS_COLUMNS,
    LABEL_COLUMNS,
    NOISE_COLUMNS,
    PEAK_COLUMNS,
    REPORT_TABLES,
)
from analysis.results.atomic import atomic_write
from analysis.results.methods import STRENGTH_SYMBOL
from analysis.results.tables import SCHEMA_VERSION
from analysis.robustness import robustness_section
from analysis.search import search_section
from analysis.step_sizes import boundaries_by_eps, eps_table
from analysis.yardsticks import headline_testable, yardstick_table

# The tables every report writes (the search ones only with a search: analysis.search).
TABLE_FILES = tuple(t for t in REPORT_TABLES if not t.startswith("search_"))


def write_report(
    results_dir: str | os.PathLike | list,
    out_dir: str | os.PathLike | None = None,
    rng_seed: int = 0,
    n_boot: int = 1000,
) -> dict[str, Path]:
    """Analyse `results_dir` (one experiment directory, or a list of them) and write the
    report. Returns {"markdown", "html", "calibration_text" (the calibration section alone,
    calibration.md), "figures", <each TABLE_FILES name>, "figure:<name>"
    for every PNG} -> path. Raises `analysis.ResultsError` if the tables cannot be read."""
    dirs = [results_dir] if isinstance(results_dir, (str, os.PathLike)) else list(results_dir)
    res = load_results(dirs)
    out = Path(out_dir) if out_dir is not None else Path(dirs[0]) / "report"
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(rng_seed)
    problems: list[str] = []
    tables = _analyse(res, rng, n_boot, problems)
    paths: dict[str, Path] = {"figures": figdir}
    for name in TABLE_FILES:
        paths[name] = _write_parquet(tables[name], out / f"{name}.parquet")
    doc = Document("pags analysis report")
    _overview(doc, res, rng_seed, n_boot)
    _summary(doc, tables, res.trials)
    calibration_section(doc, tables["calibration"], tables["yardsticks"], res.trials,
                        res.measures)  # fmt: skip
    _definitions(doc)
    figures = _method_sections(doc, res, tables, figdir, problems)
    figures.update(_noise_section(doc, tables, figdir, problems))
    _step_size_section(doc, tables)
    _correlation_section(doc, tables)
    _quality_section(doc, res.trials)
    figures.update(_guard(problems, "robustness", {}, robustness_section, doc, res.trials,
                          figdir, _save))  # fmt: skip
    figures.update(_guard(problems, "peak search", {}, search_section, doc, res.trials,
                          res.sources, out))  # fmt: skip
    _could_not_compute(doc, res, tables, problems)
    for name, path in figures.items():
        paths[f"figure:{name}"] = path
    calib_doc = Document("Calibration")  # also on its own, for `pags analyze` to print
    calibration_section(calib_doc, tables["calibration"], _empty(()), res.trials, res.measures)
    paths["calibration_text"] = _write_text(out / "calibration.md", calib_doc.markdown())
    paths["markdown"] = _write_text(out / "report.md", doc.markdown())
    paths["html"] = _write_text(out / "report.html", doc.html())
    return paths


# --- analysis ------------------------------------------------------------------------------


def _guard(problems: list[str], what: str, fallback, fn: Callable, *args, **kwargs):
    """Run `fn(*args, **kwargs)`; an unexpected error becomes a listed problem, not a crash,
    so that the rest of the report is still written."""
    try:
        return fn(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - reported, and the report goes on
        problems.append(f"{what}: internal error {type(err).__name__}: {err}")
        return fallback


def _analyse(res: Results, rng, n_boot: int, problems: list[str]) -> dict[str, pd.DataFrame]:
    t, m = res.trials, res.measures
    boot = {"rng": rng, "n_boot": n_boot}
    bounds = _guard(problems, "regime boundaries", _empty(BOUNDARY_COLUMNS), fit_regimes, t, m,
                    **boot)  # fmt: skip
    labels = _guard(problems, "regime labels", _empty(LABEL_COLUMNS), label_trials, t, bounds)
    peaks = _guard(problems, "peak alignment", _empty(PEAK_COLUMNS), peak_alignment, t, m,
                   bounds, **boot)  # fmt: skip
    corr = _guard(problems, "alignment correlation", _empty(CORRELATION_COLUMNS),
                  alignment_correlation, t, **boot)  # fmt: skip
    rho2_corr = _guard(problems, "rho2 correlation", _empty(CORRELATION_COLUMNS),
                       alignment_correlation, t, quantity=RHO2, **boot)  # fmt: skip
    by_eps = _guard(problems, "boundaries at other step sizes", _empty(EPS_COLUMNS),
                    boundaries_by_eps, t, m, **boot)  # fmt: skip
    noise = _guard(problems, "noise robustness", _empty(NOISE_COLUMNS), noise_robustness, t,
                   **boot)  # fmt: skip
    calib = _guard(problems, "calibration", calibration_table(m.iloc[0:0]), calibration_table,
                   m, t)  # fmt: skip
    yard = _guard(problems, "yardsticks", _empty(()), yardstick_table, t, m, calib)
    return {"calibration": calib, "yardsticks": yard,
            "regimes": bounds, "trial_regimes": labels, "peak_alignment": peaks,
            "correlation": corr, "rho2_correlation": rho2_corr, "boundaries_by_eps": by_eps,
            "noise_robustness": noise}  # fmt: skip


# --- sections ------------------------------------------------------------------------------


def _overview(doc: Document, res: Results, rng_seed: int, n_boot: int) -> None:
    t = res.trials
    status = t["status"].value_counts().to_dict()
    doc.para(
        "Sources: " + ", ".join(str(s) for s in res.sources) + f". Schema version "
        f"{SCHEMA_VERSION}. {len(t)} trials ("
        + ", ".join(f"{v} {k}" for k, v in sorted(status.items()))
        + f"), {len(res.measures)} measure rows. Bootstrap: {n_boot} resamples, "
        f"rng_seed={rng_seed}."
    )
    if len(t):
        versions = t[["pags_version", "torch_version", "ray_version"]].drop_duplicates()
        doc.para(
            "Datasets: "
            + ", ".join(sorted(set(t["dataset"])))
            + ". Methods: "
            + ", ".join(sorted(set(t["method"])))
            + ". Alignment metrics: "
            + (", ".join(sorted(set(t["alignment_metric"]) - {""})) or "none")
            + ". Versions (pags/torch/ray): "
            + "; ".join("/".join(r) for r in versions.itertuples(index=False))
            + "."
        )
    warning = chance_warning(t)
    if warning:
        doc.bullets([f"**Warning**: {warning}"])


# Test accuracy within this of chance (1 / num_classes) counts as "near chance".
CHANCE_MARGIN = 0.05


def chance_warning(trials: pd.DataFrame) -> str:
    """A sentence when completed trials are near chance accuracy (their gradients then say
    little about alignment), or "". Needs the num_classes column (tables since it exists)."""
    if "num_classes" not in trials:
        return ""
    done = trials[(trials["status"] == "completed") & (trials["num_classes"] > 0)]
    if done.empty:
        return ""
    chance = 1.0 / done["num_classes"]
    near = done[done["test_accuracy"] <= chance + CHANCE_MARGIN]
    if near.empty:
        return ""
    lowest = ", ".join(f"{r.method} {r.strength:g}" for r in near.head(5).itertuples())
    what = ("every completed trial is" if len(near) == len(done)
            else f"{len(near)} of {len(done)} completed trials are")  # fmt: skip
    return (
        f"{what} within {CHANCE_MARGIN:g} of chance test accuracy (1 / number of classes; "
        f"e.g. {lowest}): such models did not learn the task, their gradients say little "
        f"about alignment (train longer, or a weaker strength)"
    )


def _summary(doc: Document, tables: dict, trials: pd.DataFrame) -> None:
    doc.heading("Findings")
    items, untestable = [], []
    bounds, peaks = tables["regimes"], tables["peak_alignment"]
    calib = tables["calibration"]

    def on_alignment(row, sentence: str) -> None:
        # A finding about `alignment` stands only on a calibrated yardstick (docs/method.md).
        ok, why = headline_testable(calib, trials, row["dataset"], row["alignment_metric"])
        (items if ok else untestable).append(sentence if ok else f"{sentence} -- {why}")

    if len(bounds):
        for _, group in bounds.groupby(["dataset", "model", "method"], sort=True):
            items += [findings.regimes_sentence(group, c) for c in ("paper", "scale_free")]
    for _, row in peaks.iterrows():
        on_alignment(row, row["finding"] + "." if row["finding"] else
                     f"peak alignment for {row['method']} on {row['dataset']}/{row['model']}: "
                     f"not computed ({row['reason']}).")  # fmt: skip
    for name in ("correlation", "rho2_correlation"):
        for _, row in tables[name].iterrows():
            if row["scope"] == "all":
                on_alignment(row, findings.correlation_sentence(row))
    yard = tables["yardsticks"]
    n_yard = int(yard["finding"].str.startswith(NOT_TESTABLE).sum()) if len(yard) else 0
    doc.bullets([i for i in items if i] or ["No method group to analyse (see below)."])
    doc.para(f"Not testable (resting on an uncalibrated yardstick, counted apart): "
             f"{len(untestable)} of the findings above the calibration section, and {n_yard} "
             f"of {len(yard)} peaks in its table by yardstick.")  # fmt: skip
    doc.bullets(untestable)


def _definitions(doc: Document) -> None:
    c = criteria_table(Criteria())
    doc.heading("Definitions")
    doc.bullets([
        "Paper criterion, weak -> Bayes-aligned: first strength where off-manifold sensitivity "
        "falls below on-manifold sensitivity (means over seeds), interpolated linearly in "
        "log10 strength.",
        "Paper criterion, Bayes-aligned -> excessive: breakpoint where on-manifold sensitivity "
        "leaves its plateau (least-squares fit: plateau, then linear decline in log10 "
        f"strength; the decline must reach {c['min_decline']:.0%} of the plateau).",
        f"Scale-free criterion, weak -> Bayes-aligned: off-manifold sensitivity {c['off_drop']:.0%}"
        f" below the unregularized baseline's while on-manifold stays above "
        f"{1 - c['on_drop']:.0%} of the baseline's.",
        f"Scale-free criterion, Bayes-aligned -> excessive: accuracy more than "
        f"{c['accuracy_drop']:g} below the baseline's, or on-manifold sensitivity below "
        f"{1 - c['on_drop']:.0%} of the baseline's, whichever comes first.",
        "Intervals: 95% bootstrap percentile intervals (trials resampled within each strength, "
        "plus each trial's evaluation-point error std/sqrt(n) from measures.parquet). A bound "
        "of 0 or inf means resamples put the value below or above the swept strengths (for "
        "peak alignment, 0 = the baseline). Intervals are not widened to contain their "
        "estimate: with few seeds a skewed bootstrap can exclude it, and the column "
        "estimate_outside_ci says where it does. Boundaries are never extrapolated. "
        "Correlations are Spearman's rho within each seed with a Student-t interval across "
        "seeds (one seed: a paired bootstrap over its trials); analysis/uncertainty.py makes "
        "every interval, the same as RESULTS.md's.",
        "rho2 = ||P_perp grad f||^2 / ||grad f||^2, the off-manifold share of the headline "
        "gradient (the dataset's protocol gradient, named in the rho rows of measures.parquet; "
        "rho2 of every other gradient is there too); rho1 = the paper's Definition 1 at the "
        "smallest noise level, which tends to rho2 as the noise shrinks (Theorem 1). A "
        "gradient with no preferred direction has rho2 = (d - k) / d. Formulas and sources: "
        "docs/method.md.",
        "Strength is lambda for gradnorm and smoothness, sigma for randsmooth, epsilon for "
        "pgd_l2. Diverged, stopped and failed trials are kept in the tables but not averaged.",
    ])  # fmt: skip


def _method_sections(doc, res: Results, tables, figdir: Path, problems) -> dict[str, Path]:
    figures: dict[str, Path] = {}
    for key, rows in split_groups(res.trials):
        doc.heading(f"{key[2]} on {key[0]} ({key[1]})")
        _guard(problems, f"section {key[2]} on {key[0]}", None, _method_section,
               doc, key, rows, res, tables, figdir, figures, problems)  # fmt: skip
    return figures


def _method_section(doc, key, rows, res: Results, tables, figdir, figures, problems) -> None:
    dataset, model, method = key
    bounds, labels = tables["regimes"], tables["trial_regimes"]
    peaks, noise = tables["peak_alignment"], tables["noise_robustness"]
    sym = STRENGTH_SYMBOL.get(method, "strength")
    status = findings.status_sentence(rows, method, sym)
    if status:
        doc.para("Not completed (kept in the tables, left out of the means): " + status + ".")
    doc.table(_per_strength(rows, labels))
    gb = _select(bounds, key)
    for criterion in ("paper", "scale_free"):
        sentence = findings.regimes_sentence(gb, criterion)
        if sentence:
            doc.para(sentence)
    name = f"regimes_{_slug(key)}"
    fig = _guard(problems, f"figure {name}", None, regime_figure, rows, gb, method)
    if fig is not None:
        figures[name] = _save(fig, figdir / f"{name}.png")
        doc.image(figures[name], f"figures/{name}.png",
                  f"{method} on {dataset}: sensitivity at the headline step size (top), "
                  "rho2 and rho1 with the isotropic (d-k)/d dashed (middle, when measured), "
                  "accuracy and alignment (bottom) vs strength; shaded: weak (blue), "
                  "Bayes-aligned (green), excessive (red) by the paper criterion; solid/dashed "
                  "lines: paper/scale-free boundaries.")  # fmt: skip
    for _, row in _select(peaks, key).iterrows():
        ok, why = headline_testable(tables["calibration"], res.trials, dataset,
                                    row["alignment_metric"])  # fmt: skip
        doc.para(("" if ok else f"{NOT_TESTABLE.capitalize()} ({why}): ")
                 + (row["finding"] + "." if row["finding"] else
                    f"Peak alignment not computed: {row['reason']}."))  # fmt: skip
        if row["note"]:
            doc.para(f"Note on peak alignment: {row['note']}.")
    gn = _select(noise, key)
    if len(gn):
        doc.para(findings.noise_sentence(gn))
    group_labels = _select(labels, (dataset, model))
    fig, note = _guard(
        problems, f"gallery {method}", (None, ""),
        gallery_figure, res.sources, group_labels, method,
    )  # fmt: skip
    if fig is not None:
        name = f"gallery_{_slug(key)}"
        figures[name] = _save(fig, figdir / f"{name}.png")
        doc.image(figures[name], f"figures/{name}.png",
                  "Input, score, and input gradients of a weak, a Bayes-aligned and an "
                  "excessive model (paper criterion); maps scaled by max |value|.")  # fmt: skip
    if note:
        doc.para(note[0].upper() + note[1:] + ".")


def _noise_section(doc, tables, figdir: Path, problems) -> dict[str, Path]:
    noise = tables["noise_robustness"]
    figures = {}
    if noise.empty or "ratio_to_baseline" not in noise:
        return figures
    for (dataset, model), rows in noise.groupby(["dataset", "model"], sort=True):
        if not np.isfinite(rows["relative_noise_robustness"].to_numpy(dtype=float)).any():
            continue
        doc.heading(f"Signal vs distractor robustness on {dataset} ({model})")
        cols = ["method", "strength", "n_trials", "signal_sensitivity",
                "distractor_sensitivity", "relative_noise_robustness", "ratio_to_baseline",
                "ci_low", "ci_high"]  # fmt: skip
        doc.table(rows[cols])
        name = f"noise_{_slug((dataset, model))}"
        fig = _guard(problems, f"figure {name}", None, noise_figure, rows)
        if fig is not None:
            figures[name] = _save(fig, figdir / f"{name}.png")
            doc.image(figures[name], f"figures/{name}.png",
                      "Left: sensitivity to noise inside the signal (solid) and distractor "
                      "(dashed) masks; right: signal/distractor ratio relative to the "
                      "unregularized model, 95% CI.")  # fmt: skip
    return figures


def _step_size_section(doc, tables) -> None:
    by_eps = tables["boundaries_by_eps"]
    if by_eps.empty:
        return
    doc.heading("Do the boundaries move with the step size?")
    doc.para(
        "The regimes above are fitted at the headline step size (the paper's eps = 2.64 on "
        "CIFAR-10, scaled by sqrt(d / 3072); marked *). Refitted with the sensitivities at each "
        "other measured step size: 'moves' is yes when an estimate there falls outside the "
        "headline's 95% interval (or is not located), no when all lie inside."
    )
    for _, rows in by_eps.groupby("dataset", sort=True):
        doc.table(eps_table(rows))


def _quality_section(doc, trials: pd.DataFrame) -> None:
    quality = artifact_quality(trials)
    if quality.empty:
        return
    doc.heading("Measurement artifacts")
    doc.para(
        "How well the shared autoencoder and denoiser trained. Tangent angles are mean largest "
        "principal angles at the evaluation points: against the exact tangent spaces on the "
        "synthetic sets, against a second autoencoder trained with another seed elsewhere."
    )
    doc.table(quality.drop(columns="warning"))
    notes = [f"**Warning** ({r.dataset}): {r.warning}." for r in quality.itertuples()]
    if any(r.warning for r in quality.itertuples()):
        doc.bullets([n for n, r in zip(notes, quality.itertuples(), strict=True) if r.warning])


def _correlation_section(doc, tables) -> None:
    corr, rho2 = tables["correlation"], tables["rho2_correlation"]
    if len(rho2) and np.isfinite(rho2["spearman_rho"].to_numpy(dtype=float)).any():
        doc.heading("Off-manifold share of the gradient (rho2) vs alignment")
        doc.para(
            "The paper's central claim in one number: trials whose gradients lie more on the "
            "data manifold (smaller rho2) should have more perceptually aligned gradients, a "
            "negative Spearman correlation."
        )
        doc.bullets([findings.correlation_sentence(r) for _, r in rho2.iterrows()])
    if corr.empty:
        return
    doc.heading("Relative off-manifold robustness vs alignment")
    doc.bullets([findings.correlation_sentence(r) for _, r in corr.iterrows()])


def _could_not_compute(doc, res: Results, tables, problems) -> None:
    items = list(problems)
    t = res.trials
    if t.empty:
        items.append("everything: trials.parquet has no rows")
    for dataset, rows in t.groupby("dataset"):
        if set(rows["method"]) <= {"none"}:
            items.append(f"regimes on {dataset}: only unregularized (method none) trials")
    for _, r in tables["regimes"].iterrows():
        if r["status"] != "ok":
            items.append(
                f"{r['method']} on {r['dataset']}/{r['model']}, "
                f"{findings.CRITERION_NAMES[r['criterion']]}, "
                f"{findings.BOUNDARY_NAMES[r['boundary']]}: {r['reason']}"
            )
    for _, r in tables["peak_alignment"].iterrows():
        if r["reason"]:
            items.append(f"peak alignment, {r['method']} on {r['dataset']}: {r['reason']}")
    for _, r in tables["correlation"].iterrows():
        if r["reason"]:
            items.append(f"correlation, {r['scope']} on {r['dataset']}: {r['reason']}")
    noise = tables["noise_robustness"]
    if len(noise):
        for key, rows in noise.groupby(["dataset", "model", "method"]):
            for reason in sorted(set(rows["reason"]) - {""}):
                items.append(f"noise robustness, {key[2]} on {key[0]}: {reason}")
    doc.heading("What could not be computed")
    doc.bullets(items or ["Nothing: every value above was computed."])


# --- helpers -------------------------------------------------------------------------------


def _per_strength(rows: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Per strength: trial counts by status, means over completed trials, majority regimes."""
    cols = ["test_accuracy", "on_manifold_sensitivity", "off_manifold_sensitivity", "alignment"]
    if "rho2" in rows and np.isfinite(rows["rho2"].to_numpy(dtype=float)).any():
        cols.append("rho2")
    r = rows.copy()
    r["strength"] = np.where(r["method"] == "none", 0.0, r["strength"])
    done = r[r["status"] == "completed"]
    table = r.groupby("strength").agg(
        trials=("config_id", "size"),
        completed=("status", lambda s: int((s == "completed").sum())),
    )
    table = table.join(done.groupby("strength")[cols].mean())
    if len(labels) and "regime_paper" in labels:
        lab = labels.set_index("config_id").reindex(r["config_id"])
        lab["strength"] = r["strength"].to_numpy()
        for c in ("regime_paper", "regime_scale_free"):
            table[c] = lab.groupby("strength")[c].agg(_majority)
    return table.reset_index().rename(
        columns={"test_accuracy": "accuracy", "on_manifold_sensitivity": "on",
                 "off_manifold_sensitivity": "off"}
    )  # fmt: skip


def _majority(labels: pd.Series) -> str:
    mode = labels.dropna().mode()
    return str(mode.iloc[0]) if len(mode) else ""


def _empty(columns) -> pd.DataFrame:
    return pd.DataFrame(columns=list(columns))


def _select(df: pd.DataFrame, key: tuple) -> pd.DataFrame:
    """Rows of `df` matching (dataset, model[, method])."""
    names = ("dataset", "model", "method")[: len(key)]
    if df.empty or any(n not in df for n in names):
        return df.iloc[0:0]
    mask = np.ones(len(df), dtype=bool)
    for n, k in zip(names, key, strict=True):
        mask &= (df[n] == k).to_numpy()
    return df[mask]


def _slug(key: tuple) -> str:
    return "_".join("".join(ch if ch.isalnum() else "-" for ch in str(k)) for k in key)


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _write_text(path: Path, text: str) -> Path:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return path


def _write_parquet(df: pd.DataFrame, path: Path) -> Path:
    atomic_write(path, lambda f: df.reset_index(drop=True).to_parquet(f, index=False))
    return path
