"""Drawings of a design: an SVG floor plan per level and a massing model (one box per room) as OBJ and GLB."""

from __future__ import annotations

import json
import struct
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


BOX_FACES = ((0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7))


def massing_boxes(design: HouseDesign) -> list[tuple[str, list[tuple[float, float, float]]]]:
    """(name, 8 corners) of every room's bounding box extruded over its level (x, y up, z; metres)."""
    boxes = []
    elevation = 0.0
    for level in sorted(design.levels, key=lambda lv: lv.level):
        for room in level.rooms:
            x0, z0, x1, z1 = geometry.bounding_box(room)
            y0, y1 = elevation, elevation + level.height_m
            corners = [(x0, y0, z0), (x1, y0, z0), (x1, y0, z1), (x0, y0, z1)]
            corners += [(x, y1, z) for x, _, z in corners]
            boxes.append((f"L{level.level}_{room.id}", corners))
        elevation += level.height_m
    return boxes


def massing_obj(design: HouseDesign) -> str:
    """Wavefront OBJ: one box object per room (see `massing_boxes`)."""
    lines = ["# HouseBrain massing model: one box per room, metres, y up"]
    for index, (name, corners) in enumerate(massing_boxes(design)):
        lines.append(f"o {name}")
        lines.extend(f"v {x:.3f} {y:.3f} {z:.3f}" for x, y, z in corners)
        lines.extend("f " + " ".join(str(8 * index + i + 1) for i in face) for face in BOX_FACES)
    return "\n".join(lines) + "\n"


def massing_glb(design: HouseDesign) -> bytes:
    """Binary glTF 2.0: one triangle mesh holding every room's box (see `massing_boxes`)."""
    boxes = massing_boxes(design)
    positions = [c for _, corners in boxes for corner in corners for c in corner]
    indices = []
    for index in range(len(boxes)):
        for a, b, c, d in BOX_FACES:
            indices += [8 * index + i for i in (a, b, c, a, c, d)]
    binary = struct.pack(f"<{len(positions)}f", *positions) + struct.pack(f"<{len(indices)}I", *indices)
    n_vertices = len(positions) // 3
    xs, ys, zs = positions[0::3], positions[1::3], positions[2::3]
    gltf = {
        "asset": {"version": "2.0", "generator": "housebrain"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "massing"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": 12 * n_vertices, "target": 34962},
            {"buffer": 0, "byteOffset": 12 * n_vertices, "byteLength": 4 * len(indices), "target": 34963},
        ],
        "accessors": [
            {
                "bufferView": 0,
                "componentType": 5126,
                "count": n_vertices,
                "type": "VEC3",
                "min": [min(xs), min(ys), min(zs)],
                "max": [max(xs), max(ys), max(zs)],
            },
            {"bufferView": 1, "componentType": 5125, "count": len(indices), "type": "SCALAR"},
        ],
    }
    text = json.dumps(gltf, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary += b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    header = struct.pack("<4sII", b"glTF", 2, total)
    return (
        header
        + struct.pack("<I4s", len(text), b"JSON")
        + text
        + struct.pack("<I4s", len(binary), b"BIN\0")
        + binary
    )
