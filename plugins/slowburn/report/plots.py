"""Report plots as base64 PNGs, for embedding in self-contained HTML (run summary, weekly review).

matplotlib is imported inside the functions, with the Agg backend, so importing this module is cheap.
"""
from __future__ import annotations

import base64
import io


def png_base64(fig) -> str:
    """A matplotlib figure as a base64 PNG (for <img src="data:image/png;base64,...">)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _done(plt, fig) -> str:
    out = png_base64(fig)
    plt.close(fig)
    return out


def funnel(stage_counts: dict[str, int], title: str = "Funnel by stage") -> str:
    """Horizontal bars, first stage on top."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    names = list(stage_counts)[::-1]
    values = [stage_counts[n] for n in names]
    ax.barh(names, values, color="#4f81bd")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:,}", va="center", fontsize=8)
    ax.set_xlabel("leads")
    ax.set_title(title)
    return _done(plt, fig)


def histogram(values, bins, xlabel: str, title: str, color: str = "#c0504d") -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(values, bins=bins, color=color)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("leads")
    ax.set_title(title)
    return _done(plt, fig)


def lines(table, xlabel: str, ylabel: str, title: str) -> str:
    """One line per column of a DataFrame indexed by x (e.g. open flags per run, per flag)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    if len(table):
        for col in table.columns:
            ax.plot(list(map(str, table.index)), table[col].to_numpy(), marker="o", label=str(col))
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    else:
        ax.text(0.5, 0.5, "no flags yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _done(plt, fig)


def bars(labels, values, title: str, xlabel: str, highlight=(), note: str | None = None) -> str:
    """Vertical bars; bars whose label is in `highlight` stand out (e.g. the 5-12 contacts band)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    colors = ["#9bbb59" if lab in highlight else "#8064a2" for lab in labels]
    ax.bar([str(lab) for lab in labels], values, color=colors)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("leads")
    ax.set_title(title)
    if note:
        ax.text(0.99, 0.95, note, ha="right", va="top", transform=ax.transAxes, fontsize=7)
    return _done(plt, fig)
