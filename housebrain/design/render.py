"""Drawings of a design: an SVG floor plan per level and an OBJ massing model (one box per room)."""

from __future__ import annotations

from html import escape

from housebrain.design import geometry
from housebrain.design.schema import HouseDesign, Level, Requirements

PIXELS_PER_M = 40
FILL = {
    "living": "#f6d8ae",
    "kitchen": "#f4a261",
    "dining": "#e9c46a",
    "bedroom": "#a8dadc",
    "study": "#b5e48c",
    "bathroom": "#90caf9",
    "toilet": "#90caf9",
    "hall": "#eeeeee",
    "stairs": "#bdbdbd",
}


def floor_plan_svg(level: Level, requirements: Requirements | None = None) -> str:
    """SVG of one level: plot outline, buildable area (dashed), rooms with id and area."""
    boxes = [geometry.bounding_box(room) for room in level.rooms]
    width = requirements.plot[0] if requirements else max(b[2] for b in boxes) + 1
    depth = requirements.plot[1] if requirements else max(b[3] for b in boxes) + 1
    k = PIXELS_PER_M

    def px(value: float) -> str:
        return f"{value * k:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{px(width)}" height="{px(depth)}" '
        f'viewBox="0 0 {px(width)} {px(depth)}">',
        f'<rect x="0" y="0" width="{px(width)}" height="{px(depth)}" fill="white" stroke="black"/>',
    ]
    if requirements:
        s = requirements.setback_m
        parts.append(
            f'<rect x="{px(s)}" y="{px(s)}" width="{px(width - 2 * s)}" height="{px(depth - 2 * s)}" '
            'fill="none" stroke="grey" stroke-dasharray="6 4"/>'
        )
    for room in level.rooms:
        points = " ".join(f"{px(x)},{px(y)}" for x, y in geometry.outline(room))
        fill = FILL.get(room.type, "#dddddd")
        parts.append(
            f'<polygon points="{points}" fill="{fill}" stroke="black" stroke-width="2"><title>{escape(room.id)}</title></polygon>'
        )
        x0, y0, x1, y1 = geometry.bounding_box(room)
        parts.append(
            f'<text x="{px((x0 + x1) / 2)}" y="{px((y0 + y1) / 2)}" font-size="11" text-anchor="middle">'
            f"{escape(room.id)} {geometry.area(room):.1f} m²</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def massing_obj(design: HouseDesign) -> str:
    """Wavefront OBJ: each room's bounding box extruded over its level's height (y up, metres)."""
    lines = ["# HouseBrain massing model: one box per room, metres, y up"]
    vertex = 0
    elevation = 0.0
    for level in sorted(design.levels, key=lambda lv: lv.level):
        for room in level.rooms:
            x0, z0, x1, z1 = geometry.bounding_box(room)
            y0, y1 = elevation, elevation + level.height_m
            lines.append(f"o L{level.level}_{room.id}")
            for x, y, z in (
                (x0, y0, z0),
                (x1, y0, z0),
                (x1, y0, z1),
                (x0, y0, z1),
                (x0, y1, z0),
                (x1, y1, z0),
                (x1, y1, z1),
                (x0, y1, z1),
            ):
                lines.append(f"v {x:.3f} {y:.3f} {z:.3f}")
            faces = ((1, 4, 3, 2), (5, 6, 7, 8), (1, 2, 6, 5), (2, 3, 7, 6), (3, 4, 8, 7), (4, 1, 5, 8))
            for face in faces:
                lines.append("f " + " ".join(str(vertex + i) for i in face))
            vertex += 8
        elevation += level.height_m
    return "\n".join(lines) + "\n"
