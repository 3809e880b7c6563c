"""Which alignment yardsticks measure alignment: the calibration rule and the headline rule
(docs/method.md, "Calibration"); the tables are in `analysis.calibration`.

A yardstick is a (metric, target) pair: a similarity (pixel cosine or a perceptual metric such
as ST-LPIPS) and the map gradients are compared with (a score, or the Bayes gradient). It is
measured once per dataset and artifact set (`trainables.measure.calibration`) by scoring
probe maps against the target and recorded as `measures` rows with measure "calibration":
`gradient` names the probe, `reference` the target, `metric` the metric, `eps` the SNR of a
ladder rung. Probes:
- "ladder": target + Gaussian noise at amplitude SNR ||target|| / ||noise|| in `LADDER_SNRS`;
- nulls: "negated" (-target), "null_input" (the centred image), "null_noise" (N(0, I)),
  "null_other_point" (another evaluation point's target), "null_random_init" (a randomly
  initialised model's grad_x log p(y | x));
- "bayes_exact" (oracle sets): the exact Bayes gradient grad_x log p(y | x).

The rule (`judge`): calibrated iff alignment falls strictly down the ladder (SNR 3 > 1 > 0.3),
the negated target scores below every other null, and, on the oracle sets, the exact Bayes
gradient scores above every null (a yardstick that cannot tell the ideal gradient from a
trivial map cannot rank models). No pandas, no torch: the trial side
(trainables.measure.calibration) imports it too.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

CALIBRATION = "calibration"  # the measures.measure of calibration rows
LADDER = "ladder"
LADDER_SNRS = (3.0, 1.0, 0.3)
NEGATED = "negated"
NULLS = ("null_input", "null_noise", "null_other_point", "null_random_init")
IDEAL = "bayes_exact"
COSINE = "cosine"
# Targets (reference names of alignment rows): the Bayes-gradient estimate and the scores.
BAYES_EST, BAYES_EST_LABEL = "bayes_est", "bayes_est_label"
NOT_TESTABLE = "not testable"
# Calibration takes its targets at the true labels; the rows of a trial that name the target at
# the true label rather than the prediction share its verdict (same yardstick, other class).
CALIBRATED_AS = {"bayes_est_label": BAYES_EST, "score_label": "score"}


def probe_key(probe: str, snr: float = float("nan")) -> str:
    """The key of one probe's value: "ladder@3" for a rung, else the probe's name."""
    return f"{LADDER}@{snr:g}" if probe == LADDER else probe


def judge(values: Mapping[str, float], oracle: bool) -> tuple[bool, str]:
    """(calibrated, why not) from one yardstick's mean probe values (`probe_key` -> value)."""
    fails = []
    rungs = [values.get(probe_key(LADDER, s), np.nan) for s in LADDER_SNRS]
    if not np.all(np.isfinite(rungs)):
        fails.append("noise ladder not measured")
    elif not all(a > b for a, b in zip(rungs, rungs[1:], strict=False)):
        ladder = ", ".join(f"SNR {s:g}: {v:.3f}" for s, v in zip(LADDER_SNRS, rungs, strict=True))
        fails.append(f"does not fall down the noise ladder ({ladder})")
    nulls = {n: values[n] for n in NULLS if np.isfinite(values.get(n, np.nan))}
    neg = values.get(NEGATED, np.nan)
    if not nulls or not np.isfinite(neg):
        fails.append("nulls not measured")
    else:
        above = [n for n, v in nulls.items() if neg >= v]
        if above:
            fails.append(f"the negated target ({neg:.3f}) scores at least as high as "
                         + ", ".join(f"{n} ({nulls[n]:.3f})" for n in above))  # fmt: skip
    if oracle:
        ideal = values.get(IDEAL, np.nan)
        every = {**nulls, NEGATED: neg}
        beaten = [n for n, v in every.items() if np.isfinite(v) and not ideal > v]
        if not np.isfinite(ideal):
            fails.append("exact Bayes gradient not measured")
        elif beaten:
            fails.append(f"the exact Bayes gradient ({ideal:.3f}) does not beat "
                         + ", ".join(f"{n} ({every[n]:.3f})" for n in beaten))  # fmt: skip
    return not fails, "; ".join(fails)


def choose_headline(
    calibrated: Mapping[tuple[str, str], bool],
    perceptual: str,
    paper_pair: tuple[str, str],
    has_bayes_estimate: bool,
) -> tuple[str, str, str, str]:
    """The trial row's `alignment`: (gradient, reference, metric, why), by the headline rule.

    `calibrated`: (metric, reference) -> verdict; `perceptual`: the perceptual metric's name;
    `paper_pair`: the dataset's (gradient, reference) from `protocol.headline_for`.
    1. the perceptual metric on the paper's pair, if it calibrates against that reference;
    2. the perceptual metric on grad log p(y_hat | x) vs the Bayes-gradient estimate, if it
       calibrates there;
    3. else the pixel cosine of grad log p(y_hat | x) with the Bayes-gradient estimate (no
       perceptual metric calibrates); without a class-conditional score, the cosine on the
       paper's pair.
    """
    g, ref = paper_pair
    if calibrated.get((perceptual, ref)):
        return g, ref, perceptual, f"{perceptual} calibrates against {ref}"
    if has_bayes_estimate and calibrated.get((perceptual, BAYES_EST)):
        return "log_prob", BAYES_EST, perceptual, (
            f"{perceptual} does not calibrate against {ref} but does against {BAYES_EST}")
    why = f"{perceptual} calibrates against neither {ref} nor {BAYES_EST}"
    if has_bayes_estimate:
        return "log_prob", BAYES_EST, COSINE, f"{why}: cosine with the Bayes-gradient estimate"
    return g, ref, COSINE, why + ": pixel cosine (no class-conditional score for an estimate)"
