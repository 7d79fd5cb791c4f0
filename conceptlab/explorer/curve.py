"""One sample's intervention curve as SVG: the probability of its true class after correcting
0, 1, ..., G concept groups in a policy's order."""

from __future__ import annotations

from html import escape


def curve_svg(points: list[dict], policy: str, you: tuple[float, float, int] | None = None, width: int = 320,
              height: int = 180) -> str:
    """``points`` from ``Explorer.curve``; filled dots where the prediction is right, hollow where
    wrong; ``you`` = (groups set now, a part-set group counting its share; probability of the true
    class now; concepts set) adds a red diamond. The x axis is labelled in groups."""
    left, right, top, bottom = 38, 10, 12, 30
    n_max = max(len(points) - 1, 1)

    def xy(n: float, p: float) -> tuple[float, float]:
        return left + n / n_max * (width - left - right), top + (1 - p) * (height - top - bottom)

    line = " ".join("{:.1f},{:.1f}".format(*xy(q["n"], q["true_probability"])) for q in points)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="probability of the true class against groups corrected ({escape(policy)})">']
    for p in (0.0, 0.5, 1.0):
        _, y = xy(0, p)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{p:g}</text>')
    ticks = range(0, n_max + 1, max(1, round(n_max / 6)))
    for n in ticks:
        x, _ = xy(n, 0.0)
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 12}" text-anchor="middle" font-size="10">{n}</text>')
    parts.append(f'<polyline points="{line}" fill="none" stroke="#4e79a7" stroke-width="2"/>')
    for q in points:
        x, y = xy(q["n"], q["true_probability"])
        fill = "#4e79a7" if q["correct"] else "#fff"
        title = escape(f"{q['n']} corrected{' (last: ' + q['unit'] + ')' if q['unit'] else ''}: "
                       f"p(true class) = {q['true_probability']:.3f}")
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{fill}" stroke="#4e79a7" stroke-width="1.5">'
                     f"<title>{title}</title></circle>")
    if you is not None:
        position, probability, concepts = you
        x, y = xy(position, probability)
        parts.append(f'<path d="M {x:.1f} {y - 6:.1f} L {x + 6:.1f} {y:.1f} L {x:.1f} {y + 6:.1f} L {x - 6:.1f} {y:.1f} Z" '
                     f'fill="#e15759" fill-opacity="0.8"><title>your corrections: {concepts} concept(s) set, '
                     f'{position:.2g} group(s) worth; p(true class) = {probability:.3f}</title></path>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle" font-size="11">'
                 f"concept groups corrected ({escape(policy)} order)</text></svg>")
    return "".join(parts)
