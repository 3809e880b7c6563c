"""What each dataset's headline numbers are measured with (docs/method.md, "Headline choices").

One table, one owner: the gradient/score pair behind the trial row's `alignment`, the scalar
output behind `rho1`/`rho2` (the one whose gradient that pair uses), and the score's noise level.
The other pairs are still measured and land in measures.parquet; only the headline is chosen here.

Gradient names are `trainables.measure.gradients.KINDS`; reference names are the score maps the
measurer builds: "score_uncond" (unconditional), "score" (class-conditional at the predicted
class), "score_label" (class-conditional at the true label).
"""

from __future__ import annotations

import math

from trainables.facts import FACTS, Headline, facts_for

# The paper's Figure 3 step size on CIFAR-10 (d = 3072): the reference's
# notebooks/Figure3.ipynb plots `([0] + logspace(-3, 2, 20))[14]` = logspace(-3, 2, 20)[13].
PAPER_EPS_CIFAR = 10 ** (-3 + 13 * 5 / 19)  # 2.637 (L2 norm, pixels in [0, 1])
CIFAR_DIM = 3 * 32 * 32


def headline_eps(d: int) -> float:
    """The headline L2 step size for images with d values in [0, 1]: 2.64 * sqrt(d / 3072).

    A perturbation of fixed per-pixel size has an L2 norm growing as sqrt(d), so scaling keeps
    the reference's per-pixel size on other image sizes (digits, d = 392: 0.94)."""
    return PAPER_EPS_CIFAR * math.sqrt(d / CIFAR_DIM)


# CIFAR-10: ref experiments/measure_score_alignment.py, sum of logits vs the unconditional EDM
#   score at sigma 0.5 on [-1, 1] images = 0.25 on [0, 1].
# ImageNet-64: ref notebooks/Imagenet-64x64.ipynb, the predicted class's logit (captum Saliency,
#   target = argmax) vs the class-conditional EDM score at the true label, sigma 1.2 on
#   [-1, 1] = 0.6 on [0, 1].
# Digits, MNIST, synthetic (no score in the reference): the predicted class's logit, as in the
#   reference's notebooks/MNISTDistractor.ipynb, vs the class-conditional score at the predicted
#   class. Why not the sum of logits: cross-entropy cannot see a shift of all logits, so for the
#   small nets trained here that gradient carries a direction no loss constrains; and on the
#   synthetic set the predicted class's logit has a closed-form Bayes counterpart.
# The pairs themselves live in each dataset's facts record (trainables/facts.py).
HEADLINES: dict[str, Headline] = {name: f.headline for name, f in FACTS.items()}


def headline_for(dataset: str) -> Headline:
    """The dataset's headline; a dataset without a facts record fails loudly (one line)."""
    return facts_for(dataset).headline
