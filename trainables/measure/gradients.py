"""Input gradients of a classifier, pre-softmax (docs/method.md, "Gradients").

Kinds, each a map `(B, C, H, W)` for inputs x `(B, C, H, W)`:
- "logit_sum":  grad_x sum_k f_k(x)          (the paper's unconditional gradient)
- "pred_logit": grad_x f_{y_hat}(x)          (class-conditional; compare with a conditional score)
- "log_prob":   grad_x log softmax(f(x))_{y_hat}
y_hat is the predicted class, or the labels `y` when given. logit_sum carries a direction no loss
constrains (adding a constant to every logit changes nothing), hence log_prob too.

One backward per kind for the whole batch: summing per-example objectives is exact because each
example's output depends only on its own input -- which holds only in eval mode (BatchNorm in
train mode mixes the batch), so the model is put in eval mode and its modes restored after.
Gradients are taken w.r.t. the input only: parameter `.grad` is never touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

KINDS = ("logit_sum", "pred_logit", "log_prob")


def scalar_output(logits: torch.Tensor, kind: str, cls: torch.Tensor) -> torch.Tensor:
    """Per-example scalar `(B,)` whose input gradient is the map `kind`; logits `(B, K)`, cls
    `(B,)` the class for "pred_logit"/"log_prob" (ignored by "logit_sum")."""
    if kind == "logit_sum":
        return logits.sum(1)
    if kind == "pred_logit":
        return logits.gather(1, cls[:, None])[:, 0]
    if kind == "log_prob":
        return logits.log_softmax(1).gather(1, cls[:, None])[:, 0]
    raise ValueError(f"unknown gradient kind {kind!r}; known: {', '.join(KINDS)}")


def input_gradients_many(
    model: nn.Module, x: torch.Tensor, kinds: Sequence[str], y: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """{kind: gradient `(B, C, H, W)`} from one forward pass and one backward per kind."""
    for kind in kinds:
        scalar_output(torch.zeros(1, 1), kind, torch.zeros(1, dtype=torch.long))  # fail before work
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            logits = model(x_in)
            cls = logits.argmax(1).detach() if y is None else y.to(logits.device).long()
            out = {}
            for i, kind in enumerate(kinds):
                obj = scalar_output(logits, kind, cls).sum()
                keep = i < len(kinds) - 1
                out[kind] = torch.autograd.grad(obj, x_in, retain_graph=keep)[0].detach()
    finally:
        for m, training in modes:
            m.training = training
    return out


def input_gradients(
    model: nn.Module, x: torch.Tensor, kind: str, y: torch.Tensor | None = None
) -> torch.Tensor:
    """Gradient map `(B, C, H, W)` of one kind (module docstring) at inputs x `(B, C, H, W)`."""
    return input_gradients_many(model, x, [kind], y)[kind]
