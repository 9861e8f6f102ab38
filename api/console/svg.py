"""Inline SVG pictures for the console (no JavaScript, no CDN; colours from CSS variables, so
they follow light and dark mode)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

__all__ = ["bars", "intervals", "lift_density"]

WIDTH, HEIGHT, PAD = 520, 200, 36


def _x(value: float, lo: float, hi: float) -> float:
    return PAD + (value - lo) / (hi - lo) * (WIDTH - 2 * PAD)


def lift_density(estimate: float, se: float, lower: float, upper: float, *, title: str,
                 level: float = 0.95) -> str:  # fmt: skip
    """The (normal-approximation) posterior of a relative lift, with its credible interval
    shaded and zero marked.

    Parameters
    ----------
    estimate, se : float
        Posterior mean and standard deviation of the lift (fraction: 0.05 = +5 %).
    lower, upper : float
        The credible interval's ends (fractions).
    title : str
        Accessible title of the picture.
    level : float
        The interval's credible level, for the label.

    Returns
    -------
    str
        An ``<svg>`` element (role ``img``, with a ``<title>``).
    """
    se = max(se, 1e-9)
    lo = min(estimate - 4 * se, lower, 0.0)
    hi = max(estimate + 4 * se, upper, 0.0)
    if hi - lo < 1e-9:
        hi = lo + 1e-3
    n = 120
    xs = [lo + (hi - lo) * i / n for i in range(n + 1)]
    ys = [math.exp(-0.5 * ((x - estimate) / se) ** 2) for x in xs]
    top = HEIGHT - PAD

    def pt(x: float, y: float) -> str:
        return f"{_x(x, lo, hi):.1f},{top - y * (HEIGHT - 2 * PAD):.1f}"

    curve = " ".join(pt(x, y) for x, y in zip(xs, ys, strict=True))
    inside = [(x, y) for x, y in zip(xs, ys, strict=True) if lower <= x <= upper]
    band = ""
    if inside:
        points = [pt(inside[0][0], 0.0)] + [pt(x, y) for x, y in inside] + [pt(inside[-1][0], 0.0)]
        band = f'<polygon class="band" points="{" ".join(points)}"/>'
    zero = _x(0.0, lo, hi)
    ticks = "".join(
        f'<text x="{_x(t, lo, hi):.1f}" y="{HEIGHT - 12}" text-anchor="middle">{t:+.0%}</text>'
        for t in (lo, estimate, hi)
    )
    label = (f"lift {estimate:+.1%}, {level:.0%} interval {lower:+.1%} to {upper:+.1%}")
    return (
        f'<svg class="plot" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" aria-label="{escape(title)}: {escape(label)}">'
        f"<title>{escape(title)}: {escape(label)}</title>"
        f"{band}<polyline class=\"curve\" fill=\"none\" points=\"{curve}\"/>"
        f'<line class="axis" x1="{PAD}" y1="{top}" x2="{WIDTH - PAD}" y2="{top}"/>'
        f'<line class="zero" x1="{zero:.1f}" y1="{PAD / 2}" x2="{zero:.1f}" y2="{top}"/>'
        f'<text x="{zero + 4:.1f}" y="{PAD / 2 + 10}">no change</text>{ticks}</svg>'
    )


def bars(labels: Sequence[str], values: Sequence[float], *, title: str, unit: str = "") -> str:
    """A horizontal bar chart (e.g. a price distribution's probabilities).

    Parameters
    ----------
    labels : sequence of str
        One per bar.
    values : sequence of float
        Non-negative bar lengths, same length as ``labels``.
    title : str
        Accessible title.
    unit : str
        Appended to each value label.
    """
    rows = max(1, len(labels))
    height = 16 * rows + 8
    top = max(values, default=0.0) or 1.0
    out = [f'<svg class="plot bars" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
           f'height="{height}" aria-label="{escape(title)}"><title>{escape(title)}</title>']  # fmt: skip
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 4 + 16 * i
        length = (WIDTH - 200) * value / top
        out.append(f'<text x="0" y="{y + 11}">{escape(label)}</text>'
                   f'<rect class="bar" x="90" y="{y}" width="{length:.1f}" height="12"/>'
                   f'<text x="{96 + length:.1f}" y="{y + 11}">{value:.1%}{escape(unit)}</text>')  # fmt: skip
    out.append("</svg>")
    return "".join(out)


def intervals(labels: Sequence[str], means: Sequence[float], lows: Sequence[float],
              highs: Sequence[float], *, title: str) -> str:  # fmt: skip
    """A forest plot: one row per label, its interval as a line and its mean as a dot.

    Parameters
    ----------
    labels : sequence of str
    means, lows, highs : sequence of float
        Point estimate and interval ends, one per label (any common unit).
    title : str
        Accessible title.
    """
    rows = max(1, len(labels))
    height = 18 * rows + 24
    lo = min(lows, default=0.0)
    hi = max(highs, default=1.0)
    if hi - lo < 1e-9:
        hi = lo + 1.0
    left, right = 170, WIDTH - 16

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (right - left)

    out = [f'<svg class="plot" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
           f'height="{height}" aria-label="{escape(title)}"><title>{escape(title)}</title>']  # fmt: skip
    for i, label in enumerate(labels):
        y = 12 + 18 * i
        out.append(f'<text x="0" y="{y + 4}">{escape(label)}</text>'
                   f'<line class="curve" x1="{x(lows[i]):.1f}" y1="{y}" x2="{x(highs[i]):.1f}" y2="{y}"/>'
                   f'<circle class="bar" cx="{x(means[i]):.1f}" cy="{y}" r="3.5"/>')  # fmt: skip
    out.append(f'<text x="{left}" y="{height - 4}">{lo:.2f}</text>'
               f'<text x="{right}" y="{height - 4}" text-anchor="end">{hi:.2f}</text></svg>')  # fmt: skip
    return "".join(out)
