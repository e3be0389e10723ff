"""What the figure modules share: file names, seeded initialisation, matplotlib output, small statistics."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import torch

from ncsn.storage.atomic import atomic_write

# Files of the ``figures`` stage, inside ``paths.figures`` (read back by ncsn.reporting).
FIGURE_FILES = {
    "score_accuracy": "fig1_score_accuracy.png",
    "ssm_noise": "fig2_ssm_noise.png",
    "ssm_noise_csv": "fig2_ssm_loss.csv",
    "langevin_mixing": "fig3_langevin.png",
    "numbers": "figures.json",
}


def init_seeded(seed: int, build):
    """``build()`` with torch's global generator seeded by ``seed``, restored afterwards.

    Network initialisers draw from the global generator; forking keeps that a local effect.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, *, dpi: int = 100) -> Path:
    """Write a matplotlib figure as a PNG atomically (temporary file + ``os.replace``) and close it."""
    try:
        return atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, format="png"))
    finally:
        pyplot().close(fig)


def placeholder_figure(path: str | Path, message: str) -> Path:
    """A PNG that only says why the figure is missing (keeps a stage's declared outputs complete)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return save_figure(fig, path)


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over ``window`` values (shorter at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op CPU threads (None: unchanged), restoring the previous number."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
