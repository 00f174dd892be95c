"""Small server-side SVG line charts (no script, no chart library)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.services.turnaround import DayTurnaround

WIDTH = 900
HEIGHT = 260
LEFT = 56
RIGHT = 16
TOP = 16
BOTTOM = 36
GRID_LINES = 4


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class LineChart:
    width: int
    height: int
    median_points: str
    p90_points: str
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    left: int
    right: int
    top: int
    bottom: int


def turnaround_chart(days: Sequence[DayTurnaround]) -> LineChart | None:
    if not days:
        return None
    top_value = max(max(d.p90_minutes for d in days), 1.0)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (len(days) - 1) if len(days) > 1 else plot_w / 2)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / top_value)

    def points(values: Sequence[float]) -> str:
        return " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))

    step = max(1, len(days) // 10)
    return LineChart(
        width=WIDTH,
        height=HEIGHT,
        median_points=points([d.median_minutes for d in days]),
        p90_points=points([d.p90_minutes for d in days]),
        x_ticks=[Tick(x(i), d.day.strftime("%m-%d")) for i, d in enumerate(days) if i % step == 0],
        y_ticks=[
            Tick(y(top_value * k / GRID_LINES), f"{top_value * k / GRID_LINES:.0f}")
            for k in range(GRID_LINES + 1)
        ],
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
        bottom=HEIGHT - BOTTOM,
    )
