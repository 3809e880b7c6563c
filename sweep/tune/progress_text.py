"""The progress line's text (sweep/tune/progress.py for `pags sweep`, sweep/files/tasks.py for
`pags measure`): plain formatting, no Ray, so `pags measure` does not import Tune's reporter."""

from __future__ import annotations

from analysis.results.methods import STRENGTH_SYMBOL


def clock(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress_line(
    elapsed: float,
    counts: dict[str, int],
    best: tuple[str, float, str, float] | None,
    eta: float | None,
    label: str = "",
) -> str:
    """One status line. counts: done, diverged, failed, running, pending, total;
    best: (metric, value, method, strength)."""
    done = f"{counts['done']}/{counts['total']} done"
    extra = [f"{counts[k]} {k}" for k in ("diverged", "failed") if counts.get(k)]
    if extra:
        done += f" ({', '.join(extra)})"
    parts = [
        f"[pags{' ' + label if label else ''}] {clock(elapsed)}",
        done,
        f"{counts['running']} running",
        f"{counts['pending']} pending",
    ]
    if best is not None:
        metric, value, method, strength = best
        symbol = STRENGTH_SYMBOL.get(method, "strength")
        parts.append(f"best {metric} {value:.3f} ({method} {symbol}={strength:g})")
    parts.append(f"ETA {clock(eta)}" if eta is not None else "ETA --:--:--")
    return "  ".join(parts)
