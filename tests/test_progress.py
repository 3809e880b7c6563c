"""Progress lines: one per trial epoch; throttled ones, with the time left, for artifacts."""

from trainables.progress import EpochProgress, epoch_line


def test_epoch_line():
    metrics = {"epoch": 3, "train_loss": 0.41234, "test_accuracy": 0.912, "epoch_time_s": 4.24}
    assert epoch_line(metrics, 15) == (
        "[pags] epoch 3/15: train loss 0.4123, test accuracy 0.9120, 4.2 s"
    )
    assert epoch_line({**metrics, "measures": {}}, 15).endswith(", measured")
    diverged = {"epoch": 2, "train_loss": float("nan"), "status": "diverged"}
    assert "diverged" in epoch_line(diverged, 15)


def test_artifact_progress_is_throttled_and_bounds_the_time_left():
    lines = []
    every = EpochProgress(lines.append, "denoiser", 4, every_s=0.0)
    for epoch in range(1, 5):
        every(epoch, "validation loss", 1.0 / epoch)
    assert len(lines) == 4 and lines[1].startswith("denoiser: epoch 2/4 (validation loss 0.5)")
    assert lines[-1].endswith("at most 0 s left")
    lines.clear()
    rare = EpochProgress(lines.append, "autoencoder", 100, every_s=1e9)
    for epoch in range(1, 101):
        rare(epoch, "validation loss", 0.1)
    assert lines == [lines[0]] and "epoch 100/100" in lines[0]  # only at the cap
