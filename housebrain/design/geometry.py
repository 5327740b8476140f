"""Plane geometry of room footprints: areas, bounding boxes, overlaps and shared walls (metres)."""

from __future__ import annotations

from housebrain.design.schema import Room

Point = tuple[float, float]
Box = tuple[float, float, float, float]  # x0, y0, x1, y1

EPS = 1e-6


def outline(room: Room) -> list[Point]:
    """Vertices of the footprint, counter-clockwise for rectangles."""
    if room.rect is not None:
        x, y, w, d = room.rect
        return [(x, y), (x + w, y), (x + w, y + d), (x, y + d)]
    assert room.polygon is not None
    return [(float(x), float(y)) for x, y in room.polygon]


def area(room: Room) -> float:
    if room.rect is not None:
        return room.rect[2] * room.rect[3]
    points = outline(room)
    twice = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True))
    return abs(twice) / 2


def bounding_box(room: Room) -> Box:
    if room.rect is not None:
        x, y, w, d = room.rect
        return x, y, x + w, y + d
    xs, ys = zip(*outline(room), strict=True)
    return min(xs), min(ys), max(xs), max(ys)


def least_width(room: Room) -> float:
    """Smallest horizontal dimension: the shorter side of a rectangle, of the bounding box otherwise."""
    x0, y0, x1, y1 = bounding_box(room)
    return min(x1 - x0, y1 - y0)


def inside(point: Point, polygon: list[Point]) -> bool:
    """Even-odd rule point-in-polygon test."""
    x, y = point
    result = False
    for (x0, y0), (x1, y1) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            result = not result
    return result


def overlap_area(a: Room, b: Room, step: float = 0.05) -> float:
    """Area shared by two footprints: exact for rectangles, sampled on a `step` grid for polygons."""
    ax0, ay0, ax1, ay1 = bounding_box(a)
    bx0, by0, bx1, by1 = bounding_box(b)
    w = min(ax1, bx1) - max(ax0, bx0)
    d = min(ay1, by1) - max(ay0, by0)
    if w <= EPS or d <= EPS:
        return 0.0
    if a.rect is not None and b.rect is not None:
        return w * d
    pa, pb = outline(a), outline(b)
    x0, y0 = max(ax0, bx0), max(ay0, by0)
    nx, ny = max(int(w / step), 1), max(int(d / step), 1)
    hits = 0
    for i in range(nx):
        for j in range(ny):
            p = (x0 + (i + 0.5) * w / nx, y0 + (j + 0.5) * d / ny)
            hits += inside(p, pa) and inside(p, pb)
    return hits * (w / nx) * (d / ny)


def shared_wall(a: Room, b: Room) -> float:
    """Length of wall two rooms' bounding boxes have in common (0 when they do not touch)."""
    ax0, ay0, ax1, ay1 = bounding_box(a)
    bx0, by0, bx1, by1 = bounding_box(b)
    tol = 0.05
    if abs(ax1 - bx0) < tol or abs(bx1 - ax0) < tol:
        return max(0.0, min(ay1, by1) - max(ay0, by0))
    if abs(ay1 - by0) < tol or abs(by1 - ay0) < tol:
        return max(0.0, min(ax1, bx1) - max(ax0, bx0))
    return 0.0


def on_boundary(room: Room, box: Box) -> bool:
    """Does the room touch the outline `box` of its level's footprint (so it can have windows)?"""
    x0, y0, x1, y1 = bounding_box(room)
    bx0, by0, bx1, by1 = box
    tol = 0.05
    return abs(x0 - bx0) < tol or abs(y0 - by0) < tol or abs(x1 - bx1) < tol or abs(y1 - by1) < tol


def exposed_wall(room: Room, neighbours: list[Room]) -> float:
    """Length of the room's outline (bounding box) not shared with a neighbour: its exterior wall.

    Rooms of a level do not overlap, so the walls shared with different neighbours do not overlap
    either and their lengths add up."""
    x0, y0, x1, y1 = bounding_box(room)
    perimeter = 2 * ((x1 - x0) + (y1 - y0))
    return max(0.0, perimeter - sum(shared_wall(room, other) for other in neighbours))
