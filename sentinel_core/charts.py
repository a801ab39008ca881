"""Figures logged with monitor and retrain runs.

Plain functions returning a ``matplotlib.figure.Figure`` built without pyplot, so no
backend or display is touched (workers and CI have none) and nothing global is kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from sentinel_core.metrics import reliability_bins


def slice_chart(
    slices: Sequence[Mapping[str, Any]], observed: Mapping[str, float], *, title: str
) -> Figure:
    """Each slice's estimate with its interval; the labelled accuracy where there is one."""
    fig = Figure(figsize=(7.5, 0.35 * len(slices) + 1.6))
    ax = fig.add_subplot()
    y = np.arange(len(slices))
    acc = np.array([s["accuracy"] for s in slices])
    low = acc - np.array([s["low"] for s in slices])
    high = np.array([s["high"] for s in slices]) - acc
    ax.errorbar(acc, y, xerr=[low, high], fmt="o", capsize=3, label="estimate (interval)")
    seen = [(i, observed[s["slice"]]) for i, s in enumerate(slices) if s["slice"] in observed]
    if seen:
        ax.plot(
            [v for _, v in seen], [i for i, _ in seen], "kx", label="labelled accuracy", zorder=3
        )
    ax.set_yticks(y, [f"{s['slice']} (n={s['n']})" for s in slices])
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig


def trend_chart(history: Sequence[tuple[Any, Sequence[Any]]], *, title: str) -> Figure:
    """Each slice's estimate over the recorded runs (oldest first), its interval shaded."""
    fig = Figure(figsize=(7.5, 4.0))
    ax = fig.add_subplot()
    names = sorted({e.slice for _, estimates in history for e in estimates})
    for name in names:
        points = [
            (i, e) for i, (_, estimates) in enumerate(history) for e in estimates if e.slice == name
        ]
        x = [i for i, _ in points]
        ax.plot(x, [e.accuracy for _, e in points], marker="o", label=name)
        ax.fill_between(x, [e.low for _, e in points], [e.high for _, e in points], alpha=0.12)
    ax.set_xticks(range(len(history)), [f"{when:%m-%d %H:%M}" for when, _ in history])
    ax.tick_params(axis="x", labelrotation=45, labelsize="small")
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("estimated accuracy")
    ax.set_title(title)
    if names:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    fig.tight_layout()
    return fig


def reliability_chart(
    probs: Sequence[float], labels: Sequence[float], *, n_bins: int = 10
) -> Figure:
    """Reliability diagram: mean label against mean ``P(correct)`` per equal-width bin."""
    bins = reliability_bins(probs, labels, n_bins=n_bins)
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.scatter(
        bins.mean_p, bins.observed, s=20 + 200 * bins.n / bins.n.max(), label="bins (size = n)"
    )
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("mean P(correct)")
    ax.set_ylabel("observed accuracy")
    ax.set_title(f"reliability ({int(bins.n.sum())} labelled responses)")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig


def estimate_vs_truth_chart(per_model: Mapping[str, Mapping[str, Sequence[float]]]) -> Figure:
    """Held-out slice estimate against labelled accuracy, one series per model."""
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], "k--", linewidth=1)
    for name, per_slice in per_model.items():
        pairs = np.array(list(per_slice.values()), dtype=np.float64).reshape(-1, 2)
        ax.scatter(pairs[:, 1], pairs[:, 0], label=name)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("labelled slice accuracy")
    ax.set_ylabel("estimated slice accuracy")
    ax.set_title("held-out slices")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig
