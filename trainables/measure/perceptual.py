"""Perceptual alignment of gradient maps with scores, and its references (docs/method.md,
"Perceptual alignment"; paper section 4.2).

alignment(g, s) = 1 - LPIPS(scale(g), scale(s)) per image, with both maps scaled by their max
|value| into [-1, 1] (LPIPS's input range). Metrics, named in every result row:
- "lpips-alex": `lpips.LPIPS(net="alex")` as in the paper; needs torchvision's AlexNet trunk in the
  torch hub cache (`lpips_trunk_path()`), which this machine cannot download -- we never try.
- "stlpips-alex": stlpips-pytorch's shift-tolerant AlexNet; its wheel ships the complete weights
  (trunk and linear heads) and builds the trunk without torchvision, so it works offline.
LPIPS needs 3 channels and about 31 px per side for AlexNet's strides: grey maps are replicated
to 3 channels; maps with both sides >= MIN_SIDE (32) go in at their native size, as the
reference does with 32x32 CIFAR-10 maps; smaller ones are bilinearly upsampled by the smallest
integer factor that brings both sides to MIN_SIDE, and the metric's name says so
(`metric_name`: "stlpips-alex@x3" for 28x14 maps). Report alignment beside null references
(`null_maps`: Gaussian noise, the centered input) and, on the synthetic set, beside
`subspace_energy` and `bayes_cosine` (a metric can reward trivial maps; see docs/method.md).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

MIN_SIDE = 32  # AlexNet's strides need about 31 px; the reference feeds 32x32 maps as they are


def scale_maxabs(m: torch.Tensor) -> torch.Tensor:
    """Each map of m `(B, ...)` divided by its max |value|, into [-1, 1]; all-zero maps stay 0."""
    peak = m.flatten(1).abs().amax(1).clamp_min(torch.finfo(m.dtype).tiny)
    return m / peak.view(-1, *[1] * (m.ndim - 1))


def upsample_factor(height: int, width: int) -> int:
    """The smallest integer factor bringing both sides to >= MIN_SIDE; 1 = native size."""
    return max(1, math.ceil(MIN_SIDE / min(height, width)))


def metric_name(base: str, height: int, width: int) -> str:
    """The name an alignment value is recorded under, e.g. "stlpips-alex" for 32x32 maps and
    "stlpips-alex@x3" for 28x14 maps (compared at 84x42)."""
    factor = upsample_factor(height, width)
    return base if factor == 1 else f"{base}@x{factor}"


def to_lpips_input(m: torch.Tensor) -> torch.Tensor:
    """Maps `(B, C, H, W)` (C = 1 or 3) -> `(B, 3, f H, f W)`, f = `upsample_factor(H, W)`."""
    if m.shape[1] == 1:
        m = m.expand(-1, 3, -1, -1)
    elif m.shape[1] != 3:
        raise ValueError(f"LPIPS needs 1 or 3 channels, got {m.shape[1]}")
    factor = upsample_factor(*m.shape[-2:])
    if factor > 1:
        m = F.interpolate(m, scale_factor=factor, mode="bilinear", align_corners=False)
    return m


def lpips_trunk_path() -> Path:
    """Where torchvision keeps AlexNet's ImageNet weights: <torch hub dir>/checkpoints/<file>."""
    from torchvision.models import AlexNet_Weights

    name = os.path.basename(AlexNet_Weights.IMAGENET1K_V1.url)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


class PerceptualMetric:
    """Batched LPIPS-type distance: `__call__(a, b)` on maps `(B, C, H, W)` in [-1, 1] -> `(B,)`.

    `net` is an `lpips.LPIPS` or `stlpips.LPIPS` module (same structure: scaling layer, trunk,
    one 1x1 "lin" head per trunk layer, non-spatial). `distances` runs the trunk once per map
    and compares each map with several others, which is most of the saving when one score is
    compared with several gradients; it computes what the packages' own `forward` computes
    (tests check both against it).
    """

    def __init__(self, name: str, net: nn.Module, batch_size: int = 64):
        if not net.lpips or net.spatial:
            raise ValueError("PerceptualMetric needs a non-spatial LPIPS with its lin heads")
        self.name, self.net, self.batch_size = name, net.eval(), batch_size
        for p in self.net.parameters():
            p.requires_grad_(False)

    def to(self, device) -> PerceptualMetric:
        self.net.to(device)
        return self

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.distances({"a": a, "b": b}, [("a", "b")])[("a", "b")]

    @torch.no_grad()
    def distances(
        self, maps: dict[str, torch.Tensor], pairs: list[tuple[str, str]]
    ) -> dict[tuple[str, str], torch.Tensor]:
        """LPIPS `(B,)` for each pair of names; maps are `(B, C, H, W)` in [-1, 1], one shape.

        Points go in chunks so that one trunk call sees about `batch_size` images (all maps of
        the chunk's points stacked), which bounds the memory held in features."""
        shapes = {tuple(m.shape) for m in maps.values()}
        if len(shapes) != 1:
            raise ValueError(f"map shapes differ: {sorted(shapes)}")
        names = sorted({n for pair in pairs for n in pair})
        b = len(maps[names[0]])
        device = next(self.net.parameters()).device
        step = max(1, self.batch_size // len(names))
        out: dict[tuple[str, str], list[torch.Tensor]] = {pair: [] for pair in pairs}
        for i in range(0, b, step):
            stacked = torch.cat([maps[n][i : i + step].to(device, torch.float32) for n in names])
            feats = self._features(to_lpips_input(stacked))  # per layer, (len(names) * p, ...)
            per_name = [dict(zip(names, f.chunk(len(names)), strict=True)) for f in feats]
            for x, y in pairs:
                d = sum(
                    lin((layer[x] - layer[y]) ** 2).mean(dim=(2, 3))
                    for lin, layer in zip(self.net.lins, per_name, strict=True)
                )
                out[(x, y)].append(d.flatten())
        like = maps[names[0]]
        return {
            pair: torch.cat(v).to(like.device) if v else like.new_zeros(0)
            for pair, v in out.items()
        }

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-length (over channels) trunk features per layer, as LPIPS.forward makes them."""
        if self.net.version == "0.1":  # LPIPS v0.0 skipped this scaling; both builds are v0.1
            x = self.net.scaling_layer(x)
        return [f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10) for f in self.net.net(x)]


def _quiet(fn, *args, **kw):
    # Both packages print set-up banners and lpips calls torchvision's deprecated `pretrained=`
    # argument; keep sweep logs clean.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(pretrained|weights).*", category=UserWarning)
        return fn(*args, **kw)


# The name each metric's values are recorded under (before any "@xN" resize suffix).
METRIC_NAMES = {"lpips": "lpips-alex", "stlpips": "stlpips-alex"}


def resolve_metric_kind(kind: str) -> str:
    """ "auto" -> "lpips" when its AlexNet weights are cached here, else "stlpips"."""
    if kind == "auto":
        return "lpips" if lpips_trunk_path().is_file() else "stlpips"
    if kind not in METRIC_NAMES:
        raise ValueError(f"unknown metric {kind!r}; known: auto, {', '.join(METRIC_NAMES)}")
    return kind


def _build_lpips() -> PerceptualMetric:
    path = lpips_trunk_path()
    if not path.is_file():
        raise ValueError(
            f"metric 'lpips' needs torchvision's AlexNet weights at {path} (cannot be downloaded"
            f" here); copy {path.name} there or use metric 'stlpips'"
        )
    import lpips

    # pnet_rand=True builds the trunk without torchvision's download path; we load the cached
    # file ourselves (strictly), then lpips's own linear heads come from its wheel.
    net = _quiet(lpips.LPIPS, net="alex", pnet_rand=True, verbose=False)
    trunk = torch.load(path, map_location="cpu", weights_only=True)
    mapped = {}
    for key in net.net.state_dict():
        _, idx, param = key.split(".")  # "slice1.0.weight" <- "features.0.weight"
        mapped[key] = trunk[f"features.{idx}.{param}"]
    net.net.load_state_dict(mapped, strict=True)
    return PerceptualMetric(METRIC_NAMES["lpips"], net)


def _build_stlpips() -> PerceptualMetric:
    from stlpips_pytorch import stlpips

    # pretrained=False: build, then load the shipped file ourselves and check every weight is in
    # it (the package loads with strict=False, which would hide a partial load).
    net = _quiet(
        stlpips.LPIPS, pretrained=False, net="alex", variant="shift_tolerant", verbose=False
    )
    path = Path(stlpips.__file__).parent / "weights" / "vST0.0" / "alex_shift_tolerant.pth"
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = net.load_state_dict(state, strict=False)
    # lins.* are aliases of lin0..lin4 (a ModuleList over the same layers), saved once.
    missing = [k for k in missing if not k.startswith("lins.")]
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match ST-LPIPS: missing {missing}, unexpected {unexpected}"
        )
    return PerceptualMetric(METRIC_NAMES["stlpips"], net)


def build_metric(kind: str = "auto", device: str | torch.device = "cpu") -> PerceptualMetric:
    """ "lpips" (paper; needs cached AlexNet weights), "stlpips" (offline), or "auto" (lpips if
    its weights are present, else stlpips). Never touches the network."""
    builders = {"lpips": _build_lpips, "stlpips": _build_stlpips}
    return builders[resolve_metric_kind(kind)]().to(device)


def alignment(g: torch.Tensor, s: torch.Tensor, metric: PerceptualMetric) -> torch.Tensor:
    """1 - LPIPS(scale(g), scale(s)) per image, `(B,)`, for maps `(B, C, H, W)`; higher = closer."""
    return 1 - metric(scale_maxabs(g), scale_maxabs(s))


def alignments(
    maps: dict[str, torch.Tensor], pairs: list[tuple[str, str]], metric: PerceptualMetric
) -> dict[tuple[str, str], torch.Tensor]:
    """`alignment` for several (gradient, reference) pairs of named maps, each map's LPIPS
    features computed once however many pairs it is in."""
    scaled = {name: scale_maxabs(maps[name]) for name in {n for pair in pairs for n in pair}}
    return {pair: 1 - d for pair, d in metric.distances(scaled, pairs).items()}


def cosine(g: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Pixel-space cosine similarity per image, `(B,)`; 0 when either map is all zero."""
    return F.cosine_similarity(g.flatten(1).double(), s.flatten(1).double(), dim=1, eps=1e-30).to(
        g.dtype
    )


def null_maps(x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Trivial maps `(B, C, H, W)` to score like gradients: "noise" N(0, I) and "input" = x minus
    its per-image mean (a gradient that merely copies the image should not count as aligned)."""
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    centered = x - x.flatten(1).mean(1).view(-1, *[1] * (x.ndim - 1))
    return {"noise": noise, "input": centered}


def subspace_energy(
    g: torch.Tensor, A: torch.Tensor, B_basis: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Fractions of ||g||^2 in span[A], span[B] and off both, each `(B,)`, summing to 1.

    g is `(B, d)` or `(B, C, H, W)`; A `(d, k_a)` or per point `(B, d, k_a)`, B_basis likewise.
    The columns are orthonormalized here; the split is exact when span[A] is orthogonal to
    span[B] (the synthetic sets: signal and distractor halves), and "off" is the rest.
    All-zero maps give NaN.
    """
    gf = g.reshape(g.shape[0], -1).double()

    def share(basis: torch.Tensor) -> torch.Tensor:
        q = torch.linalg.qr(basis.to(gf.device, torch.float64))[0]
        q = q.expand(len(gf), -1, -1) if q.dim() == 2 else q
        return torch.einsum("bd,bdk->bk", gf, q).pow(2).sum(1) / gf.pow(2).sum(1)

    sig, dis = share(A), share(B_basis)
    return {"signal": sig, "distractor": dis, "off": 1 - sig - dis}


def bayes_cosine(g: torch.Tensor, bayes_grad: torch.Tensor) -> torch.Tensor:
    """Cosine `(B,)` between gradient maps and the Bayes-optimal classifier's gradient."""
    return cosine(g, bayes_grad.to(g.device, g.dtype))


# ---- The measurement suite's alignment and gradient-energy families (evaluate.py) ------------
def measure_alignment(ctx, probe) -> dict:
    """Perceptual alignment (and cosine) of every recorded gradient/reference pair; the summary
    at the yardstick the calibration rule made the headline (`ctx.yardstick`; docs/method.md,
    "Calibration").

    Pairs recorded for every dataset, whichever is the headline: the sum-of-logits gradient vs
    the unconditional score, the predicted class's logit vs the class-conditional score at the
    predicted class ("score") and at the true label ("score_label"), the gradient of
    log p(y|x) vs "score" and vs the Bayes-gradient estimate ("bayes_est", "bayes_est_label"
    at the true label), on the oracle sets vs the exact Bayes gradient ("bayes_exact"), and
    null maps (Gaussian noise, the centred input) vs every score a gradient meets, so a
    reader can tell a meaningful value from a trivial one."""
    maps, head = probe.maps, ctx.head
    pairs = [("logit_sum", "score_uncond"), ("pred_logit", "score"), ("log_prob", "score")]
    for ref in dict.fromkeys((head.reference, "score", "score_uncond")):
        pairs += [("null_noise", ref), ("null_input", ref)]
    if "score_label" in maps:
        pairs.append(("pred_logit", "score_label"))
    if "bayes_est" in maps:  # the identifiable pair (bayes.py), at prediction and label
        pairs += [("log_prob", "bayes_est"), ("log_prob_label", "bayes_est_label"),
                  ("null_noise", "bayes_est"), ("null_input", "bayes_est")]  # fmt: skip
    if "exact_score" in maps:  # synthetic set: the exact class-conditional score
        pairs += [("pred_logit", "exact_score"), ("log_prob", "bayes_exact")]
    head_g, head_ref, head_metric, _ = ctx.yardstick  # the calibrated headline
    headline_pair = (head_g, head_ref)
    if headline_pair not in pairs:
        raise ValueError(f"{ctx.cfg.dataset}: headline pair {headline_pair} is not measured")
    with torch.no_grad():
        aligned = alignments(maps, pairs, ctx.metric)
        for g_name, ref in pairs:
            probe.row("alignment", aligned[(g_name, ref)].cpu(), gradient=g_name,
                      reference=ref, metric=ctx.metric_name)  # fmt: skip
            probe.row("alignment", cosine(maps[g_name], maps[ref]).cpu(), gradient=g_name,
                      reference=ref, metric="cosine")  # fmt: skip
        values = (cosine(maps[head_g], maps[head_ref]) if head_metric == "cosine"
                  else aligned[headline_pair])  # fmt: skip
        headline = float(values.mean())
    return {
        "alignment": headline,
        "alignment_metric": head_metric,
        "alignment_gradient": head_g,
        "alignment_reference": head_ref,
        "alignment_score": ctx.score.name,
    }


def measure_gradient_share(ctx, probe) -> dict:
    """Share of the headline gradient's energy inside the signal (digit) mask."""
    if ctx.mask is None:
        return {}
    g2 = probe.grads[ctx.head.gradient].pow(2)
    share = (g2 * ctx.mask).flatten(1).sum(1) / g2.flatten(1).sum(1).clamp_min(1e-30)
    probe.row("gradient_signal_share", share.cpu(), gradient=ctx.head.gradient)
    return {"gradient_signal_share": float(share.mean())}


def measure_oracle_gradient(ctx, probe) -> dict:
    """Synthetic sets: the headline gradient's energy on the signal, distractor and off-manifold
    spans, and the cosine of grad log p(y_hat|x) with the Bayes classifier's (like with like:
    a logit's gradient differs by grad logsumexp, which cross-entropy never sees)."""
    if ctx.oracle is None:
        return {}
    xc, g = ctx.x.cpu(), probe.grads[ctx.head.gradient].cpu()
    oracle = ctx.oracle
    energy = subspace_energy(g, oracle.signal_tangent_at(xc), oracle.distractor_tangent_at(xc))
    for part, v in energy.items():
        probe.row(f"energy_{part}", v, gradient=ctx.head.gradient)
    # Theorem 2 (paper section 3.2): the exact Bayes gradient itself; its energy_off is its
    # rho2 on the exact tangent spaces, predicted ~0, with no energy on the distractor.
    bayes = subspace_energy(probe.maps["bayes_exact"].cpu(), oracle.signal_tangent_at(xc),
                            oracle.distractor_tangent_at(xc))  # fmt: skip
    for part, v in bayes.items():
        probe.row(f"energy_{part}", v, gradient="bayes_exact")
    # Like with like: grad log p(y_hat|x) of the model and of the Bayes classifier (a logit's
    # gradient differs by grad logsumexp, which cross-entropy never sees).
    b_cos = bayes_cosine(probe.grads["log_prob"].cpu().double(), probe.maps["bayes_exact"].cpu())
    probe.row("bayes_cosine", b_cos, gradient="log_prob", reference="bayes_exact",
              metric="cosine")  # fmt: skip
    return {}
