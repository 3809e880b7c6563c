"""pags' CIFAR-shape estimators against synthetic-shapes' exact answers (issue 21, item 2-3).

    python benchmarks/validate_shapes.py --cache-dir DIR [--ae-epochs N] [--denoiser-epochs N]
        [--points 48] [--ae128-epochs N]

Builds (or reads from DIR) the product's artifact set for synthetic-shapes with the given caps
(prepare_artifacts: conv autoencoder at the set's latent 4, UNet denoiser at sigma 0.25), then
prints, each beside a named baseline:
  - tangents: overlap tr(P_est P_exact) / k, mean largest principal angle and the mean angle
    spectrum of the autoencoder (latent 4, and 128 with --ae128-epochs), against one global
    PCA subspace of the same size fitted to the training images;
  - score: cosine of the denoiser's score with the exact score at clean and at sigma-noisy
    points, unconditional and at the true label, against the denoiser's mixture baseline alone;
  - Bayes gradient: cosine of score(x|y) - score(x) with the exact Bayes gradient and with the
    exact smoothed one (exact scores' difference), at the points with p(y|x) in [0.05, 0.95];
  - calibration: the product's calibration rows for this artifact set (small-cnn, the
    perceptual metric pags picks at 3x32x32), as the report's table.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import pandas as pd
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from analysis.calibration import calibration_table  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402
from trainables.data import load_dataset  # noqa: E402
from trainables.data.shapes import ambiguous_fraction  # noqa: E402
from trainables.measure.artifacts import _overlap, prepare_artifacts  # noqa: E402
from trainables.measure.autoencoder import load_autoencoder, train_autoencoder  # noqa: E402
from trainables.measure.bayes import exact_bayes_gradient  # noqa: E402
from trainables.measure.calibration import cached_calibration, calibrate, fresh_model  # noqa: E402
from trainables.measure.perceptual import build_metric  # noqa: E402
from trainables.measure.perceptual import metric_name as perceptual_name  # noqa: E402
from trainables.measure.score import DenoiserScore  # noqa: E402
from trainables.measure.tangent import principal_angles, tangent_bases  # noqa: E402
from trainables.models import build_model  # noqa: E402


def cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.flatten(1).double(), b.flatten(1).double(),
                                                 dim=1, eps=1e-30)  # fmt: skip


def ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.flatten(1).double().norm(dim=1) / b.flatten(1).double().norm(dim=1)


def tangent_row(name: str, q: torch.Tensor, exact: torch.Tensor) -> dict:
    q, exact = q.double(), exact.double()
    angles = principal_angles(q, exact)  # (B, 4) ascending
    return {"estimate": name, "k": q.shape[-1], "overlap": float(_overlap(q, exact).mean()),
            "largest_angle_deg": float(angles[:, -1].mean()),
            "angle_spectrum_deg": [round(float(a), 1) for a in angles.mean(0)]}  # fmt: skip


def global_pca(x_train: torch.Tensor, k: int, n: int) -> torch.Tensor:
    flat = x_train.flatten(1).double()
    _, _, v = torch.linalg.svd(flat - flat.mean(0), full_matrices=False)
    return v[:k].T.expand(n, -1, -1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--ae-epochs", type=int, default=0, help="0: the set's facts record")
    ap.add_argument("--denoiser-epochs", type=int, default=0)
    ap.add_argument("--points", type=int, default=48)
    ap.add_argument("--ae128-epochs", type=int, default=0, help="also a latent-128 autoencoder")
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = TrialConfig.from_dict({"dataset": "synthetic-shapes", "eval_points": args.points,
                                 "ae_max_epochs": args.ae_epochs,
                                 "denoiser_max_epochs": args.denoiser_epochs})  # fmt: skip
    bundle = load_dataset("synthetic-shapes", 0)
    t0 = time.monotonic()
    art = prepare_artifacts(cfg, args.cache_dir, bundle)
    print(f"artifacts ready in {time.monotonic() - t0:.0f} s: {art.path}")
    print("quality:", {k: round(v, 4) if isinstance(v, float) else v
                       for k, v in art.quality.items()})  # fmt: skip
    oracle, sigma = bundle.oracle, art.config.score_sigma
    x, y = art.x, art.y
    x_train = bundle.train.tensors[0]
    exact_q = oracle.tangent_at(x)

    # ---- tangents
    rows = [tangent_row("autoencoder (artifacts)", art.tangent, exact_q),
            tangent_row("global PCA", global_pca(x_train, 4, len(x)), exact_q),
            tangent_row("global PCA", global_pca(x_train, 128, len(x)), exact_q)]  # fmt: skip
    if args.ae128_epochs:
        t1 = time.monotonic()
        out = os.path.join(args.cache_dir, "validate-ae128")
        path = train_autoencoder(x_train, 128, args.ae128_epochs, 0, out, patience=60)
        ae = load_autoencoder(path)
        with torch.no_grad():
            z = ae.encode(x)
        rows.append(tangent_row(f"autoencoder ({args.ae128_epochs} epochs)",
                                tangent_bases(ae.decode, z), exact_q))  # fmt: skip
        print(f"latent-128 autoencoder: {time.monotonic() - t1:.0f} s")
    print("\n## Tangents vs the exact 4-d tangent space\n")
    print(pd.DataFrame(rows).to_string(index=False, float_format="%.3f"))

    # ---- score
    score = DenoiserScore(art.denoiser, sigma)
    noisy = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    srows = []
    for where, pts in (("clean", x), ("noisy", noisy)):
        for cond in (False, True):
            yy = y if cond else None
            exact = oracle.score(pts, sigma, yy)
            est = score(pts, yy)
            base = DenoiserScore(_baseline_only(art.denoiser), sigma)(pts, yy)
            srows.append({"points": where, "score": "given y" if cond else "unconditional",
                          "denoiser cosine": float(cos(est, exact).mean()),
                          "mixture baseline cosine": float(cos(base, exact).mean()),
                          "norm ratio": float(ratio(est, exact).mean())})  # fmt: skip
    print(f"\n## Denoiser score vs the exact score (sigma {sigma})\n")
    print(pd.DataFrame(srows).to_string(index=False, float_format="%.3f"))

    # ---- Bayes gradient from score differences
    with torch.no_grad():
        p = oracle.bayes_logits(x).exp()
    keep = (p.gather(1, y[:, None]).squeeze(1) >= 0.05) & (
        p.gather(1, y[:, None]).squeeze(1) <= 0.95
    )
    bayes = exact_bayes_gradient(oracle, x, y)
    smoothed = oracle.score(x, sigma, y) - oracle.score(x, sigma)
    est = score(x, y) - score(x)
    base = DenoiserScore(_baseline_only(art.denoiser), sigma)
    est_base = base(x, y) - base(x)
    print(
        f"\n## score(x|y) - score(x) vs the Bayes gradient ({int(keep.sum())} of {len(x)} points "
        f"with p(y|x) in [0.05, 0.95]; ambiguous share of the set "
        f"{ambiguous_fraction(oracle, x):.3f})\n"
    )
    brow = [
        {"estimate": name, "vs exact Bayes": float(cos(g, bayes)[keep].mean()),
         "vs exact smoothed Bayes": float(cos(g, smoothed)[keep].mean())}
        for name, g in (("denoiser", est), ("mixture baseline", est_base),
                        ("exact smoothed (sigma)", smoothed))
    ]  # fmt: skip
    print(pd.DataFrame(brow).to_string(index=False, float_format="%.3f"))

    # ---- calibration: the product's rows (small-cnn at random init, the 32x32 metric)
    metric = build_metric("auto", "cpu")
    metric_name = perceptual_name(metric.name, *x.shape[-2:])
    model = fresh_model(lambda: build_model("small-cnn", x.shape[1], bundle.num_classes))
    t2 = time.monotonic()
    crow = cached_calibration(  # the rows a small-cnn trial on this artifact set reads
        art.path,
        f"small-cnn-{metric_name}-{score.name}",
        lambda: calibrate(score, x, y, oracle, sigma, model, metric, metric_name),
    )
    print(f"\n## Calibration ({metric_name}, {time.monotonic() - t2:.0f} s)\n")
    table = calibration_table(pd.DataFrame(crow).assign(dataset="synthetic-shapes"))
    print(table.drop(columns=["dataset"]).to_string(index=False, float_format="%.3f"))


def _baseline_only(denoiser) -> torch.nn.Module:
    """The denoiser with its net's correction switched off: the mixture baseline alone (as
    tests/test_ground_truth.py reads it)."""
    baseline = copy.deepcopy(denoiser)
    out = baseline.net.out
    last = out[-1] if isinstance(out, torch.nn.Sequential) else out  # U-Net / MLP
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    return baseline


if __name__ == "__main__":
    main()
