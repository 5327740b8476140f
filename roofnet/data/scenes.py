"""Procedural aerial roof scenes whose labels agree for every task (pure numpy, no file I/O).

A scene is a ground plane with buildings of four kinds: flat, gable, hip and L-shaped (two gable
wings, which meet in valleys). Each building is rotated by a random angle and described analytically
in its own frame (u along the long side, v across), so every label follows from the same geometry:

    segments        (H, W) uint8   azimuth class 0..15 of the face's downslope direction (N=0, NNE=1, ...
                                   clockwise), 16 flat, 17 background (RID's 18-label set)
    superstructures (H, W) uint8   pvmodule 0, dormer 1, window 2, chimney 4; 8 background (RID)
    building        (H, W) uint8   footprint 0/1 (AIRS)
    lines           (4, H, W) uint8  eave, ridge, hip, valley 0/1 (Roofline channels plus valley)
    height          (H, W) float32 nDSM in metres (0 on the ground; Roofline `depths`)
    pitch           (H, W) float32 roof pitch in degrees (0 on flat roofs and the ground)
    image           (H, W, 3) uint8  RGB rendered with Lambertian shading from the face normals

Azimuth classes follow RID: class k covers azimuths within 11.25 degrees of k * 22.5 degrees, where the
azimuth is the compass direction the roof face looks at (its downslope direction) with north up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SEGMENT_BACKGROUND = 17
SEGMENT_FLAT = 16
SUPERSTRUCTURE_NAMES = ("pvmodule", "dormer", "window", "ladder", "chimney", "shadow", "tree", "unknown")
SUPERSTRUCTURE_BACKGROUND = 8
LINE_NAMES = ("eave", "ridge", "hip", "valley")
BUILDING_KINDS = ("flat", "gable", "hip", "l_shaped")
SUN = np.array([-0.45, -0.35, 0.82])  # light from the north-west, above (x east, y south, z up)
LINE_HALF_WIDTH = 0.9  # pixels either side of a line's centre


@dataclass
class Scene:
    """All labels of one rendered scene (see module docstring for shapes and values)."""

    image: np.ndarray
    segments: np.ndarray
    superstructures: np.ndarray
    building: np.ndarray
    lines: np.ndarray
    height: np.ndarray
    pitch: np.ndarray | None = None
    kinds: list[str] = field(default_factory=list)


def empty_scene(height: int, width: int, rng: np.random.Generator) -> Scene:
    """Ground only: textured grass/pavement, no buildings."""
    ground = np.empty((height, width, 3), np.float32)
    base = rng.uniform([70, 90, 60], [120, 130, 95])
    ground[:] = base
    ground += rng.normal(0, 6, (height, width, 1))
    return Scene(
        image=ground,  # float until `finish_scene`
        segments=np.full((height, width), SEGMENT_BACKGROUND, np.uint8),
        superstructures=np.full((height, width), SUPERSTRUCTURE_BACKGROUND, np.uint8),
        building=np.zeros((height, width), np.uint8),
        lines=np.zeros((4, height, width), np.uint8),
        height=np.zeros((height, width), np.float32),
        pitch=np.zeros((height, width), np.float32),
    )


def azimuth_class(east: np.ndarray, south: np.ndarray) -> np.ndarray:
    """RID azimuth class (0 = N, 4 = E, 8 = S, 12 = W) of horizontal directions (east, south)."""
    azimuth = np.degrees(np.arctan2(east, -south)) % 360.0
    return (np.floor((azimuth + 11.25) / 22.5).astype(np.int64) % 16).astype(np.uint8)


@dataclass
class _Roof:
    """One building in its own frame over the pixels of its bounding box."""

    inside: np.ndarray  # bool footprint
    height: np.ndarray  # metres above ground
    slope_u: np.ndarray  # downslope direction in the building frame (0, 0 for flat)
    slope_v: np.ndarray
    face: np.ndarray  # int face id, distinct per roof plane
    lines: np.ndarray  # (4, h, w) bool


def _gable(u, v, half_u, half_v, eave, rise):
    inside = (np.abs(u) <= half_u) & (np.abs(v) <= half_v)
    height = eave + rise * (half_v - np.abs(v))
    slope_u = np.zeros_like(u)
    slope_v = np.sign(v) + (v == 0)
    face = np.where(v >= 0, 1, 2)
    ridge = inside & (np.abs(v) <= LINE_HALF_WIDTH)
    return inside, height, slope_u, slope_v, face, ridge


def _roof(
    kind: str, u: np.ndarray, v: np.ndarray, half_u: float, half_v: float, eave: float, rise: float
) -> _Roof:
    """Footprint, heights, slopes, faces and lines of one building; `rise` is metres per pixel."""
    lines = np.zeros((4, *u.shape), bool)
    if kind == "flat":
        inside = (np.abs(u) <= half_u) & (np.abs(v) <= half_v)
        height = np.full_like(u, eave + 0.4)
        zeros = np.zeros_like(u)
        return _Roof(inside, height, zeros, zeros, np.zeros(u.shape, np.int64), lines)
    if kind == "gable":
        inside, height, slope_u, slope_v, face, ridge = _gable(u, v, half_u, half_v, eave, rise)
        lines[1] = ridge
        return _Roof(inside, height, slope_u, slope_v, face, lines)
    if kind == "hip":
        inside = (np.abs(u) <= half_u) & (np.abs(v) <= half_v)
        to_long_edge = half_v - np.abs(v)
        to_short_edge = half_u - np.abs(u)
        across = to_long_edge <= to_short_edge
        height = eave + rise * np.minimum(to_long_edge, to_short_edge)
        slope_u = np.where(across, 0.0, np.sign(u) + (u == 0))
        slope_v = np.where(across, np.sign(v) + (v == 0), 0.0)
        face = np.where(across, np.where(v >= 0, 1, 2), np.where(u >= 0, 3, 4))
        ridge_extent = half_u - half_v
        lines[1] = inside & (np.abs(v) <= LINE_HALF_WIDTH) & (np.abs(u) <= ridge_extent)
        lines[2] = (
            inside
            & (np.abs(to_long_edge - to_short_edge) / np.sqrt(2) <= LINE_HALF_WIDTH)
            & (np.abs(u) >= ridge_extent - LINE_HALF_WIDTH)
        )
        return _Roof(inside, height, slope_u, slope_v, face, lines)
    if kind == "l_shaped":
        # Main wing along u; a second wing across it at one end, both gables with the same eave height.
        main = _gable(u, v, half_u, half_v, eave, rise)
        wing_centre = half_u - half_v
        # The wing's own frame: long side along v, from the main ridge out beyond the main eave; where
        # the two roofs meet, the upper envelope has its valleys.
        wing_half_u = half_v * 1.1
        wing = _gable(v - wing_half_u, u - wing_centre, wing_half_u, half_v, eave, rise)
        main_height = np.where(main[0], main[1], -np.inf)
        wing_height = np.where(wing[0], wing[1], -np.inf)
        on_wing = wing_height > main_height
        inside = main[0] | wing[0]
        height = np.where(on_wing, wing[1], main[1])
        # The wing frame is the main frame rotated by 90 degrees: (u, v)_wing = (v, u) directions.
        slope_u = np.where(on_wing, wing[3], main[2])
        slope_v = np.where(on_wing, wing[2], main[3])
        face = np.where(on_wing, wing[4] + 2, main[4])
        both = main[0] & wing[0]
        lines[1] = (main[5] & ~on_wing) | (wing[5] & on_wing)
        difference = np.where(both, np.abs(main[1] - wing[1]), np.inf)
        crease = difference / (rise * np.sqrt(2)) <= LINE_HALF_WIDTH
        lines[3] = both & crease & (height > eave + rise * LINE_HALF_WIDTH)
        lines[1] &= ~lines[3]
        return _Roof(inside, np.where(inside, height, 0.0), slope_u, slope_v, face, lines)
    raise ValueError(f"unknown building kind {kind!r}; expected one of {BUILDING_KINDS}")


def _boundary(inside: np.ndarray) -> np.ndarray:
    """Footprint pixels with a 4-neighbour outside it (one pixel wide eave line)."""
    padded = np.pad(inside, 1)
    eroded = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return inside & ~eroded


def add_building(
    scene: Scene,
    rng: np.random.Generator,
    centre: tuple[float, float],
    size: float,
    kind: str | None = None,
    metres_per_pixel: float = 0.25,
) -> bool:
    """Render one building centred at (row, col) whose long side is about `size` pixels.

    Returns False (and draws nothing) when it would overlap a building already in the scene.
    """
    kind = kind or str(rng.choice(BUILDING_KINDS))
    half_u = size / 2
    half_v = half_u * rng.uniform(0.45, 0.7)
    angle = rng.uniform(0, np.pi)
    reach = int(np.ceil(np.hypot(half_u, half_v * (2.5 if kind == "l_shaped" else 1.0)))) + 2
    rows, cols = scene.segments.shape
    r0, r1 = max(int(centre[0]) - reach, 0), min(int(centre[0]) + reach + 1, rows)
    c0, c1 = max(int(centre[1]) - reach, 0), min(int(centre[1]) + reach + 1, cols)
    if r1 - r0 < 4 or c1 - c0 < 4:
        return False
    yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float64)
    dy, dx = yy - centre[0], xx - centre[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u = dx * cos + dy * sin
    v = -dx * sin + dy * cos
    eave = rng.uniform(3.0, 8.0)
    pitch = np.radians(rng.uniform(25, 45))
    rise = np.tan(pitch) * metres_per_pixel
    roof = _roof(kind, u, v, half_u, half_v, eave, rise)
    window = (slice(r0, r1), slice(c0, c1))
    if not roof.inside.any() or (scene.building[window].astype(bool) & _dilate(roof.inside, 2)).any():
        return False

    inside = roof.inside
    # Downslope direction in image axes: east = +x (cols), south = +y (rows).
    east = roof.slope_u * cos - roof.slope_v * sin
    south = roof.slope_u * sin + roof.slope_v * cos
    pitched = (roof.slope_u != 0) | (roof.slope_v != 0)
    segments = np.where(pitched, azimuth_class(east, south), SEGMENT_FLAT).astype(np.uint8)
    normal = np.stack(
        [east * np.sin(pitch), south * np.sin(pitch), np.where(pitched, np.cos(pitch), 1.0)], -1
    )
    shade = np.clip(normal @ SUN, 0.15, 1.0)
    colour = rng.uniform([120, 50, 40], [190, 110, 90]) if kind != "flat" else rng.uniform(120, 170, 3)
    pixels = colour * (0.35 + 0.75 * shade[..., None]) + rng.normal(0, 4, (*inside.shape, 1))

    lines = roof.lines & inside
    lines[0] = _boundary(inside) if kind != "flat" else False
    lines[1:] &= ~lines[0]
    scene.segments[window][inside] = segments[inside]
    scene.building[window][inside] = 1
    scene.height[window][inside] = roof.height[inside]
    scene.pitch[window][inside] = np.where(pitched, np.degrees(pitch), 0.0)[inside]
    scene.image[window][inside] = pixels[inside]
    for channel in range(4):
        scene.lines[channel][window][lines[channel]] = 1
    _cast_shadow(scene, window, inside, eave)
    _add_superstructures(scene, rng, window, roof, inside, pitched, u, v, half_u, half_v)
    scene.kinds.append(kind)
    return True


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(radius):
        padded = np.pad(out, 1)
        out = padded[1:-1, 1:-1] | padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
    return out


def _cast_shadow(scene: Scene, window: tuple[slice, slice], inside: np.ndarray, eave: float) -> None:
    """Darken the ground south-east of the building (sun from the north-west)."""
    offset = max(round(eave / 2), 1)
    shadow = np.zeros_like(inside)
    shadow[offset:, offset:] = inside[:-offset, :-offset]
    ground = shadow & (scene.building[window] == 0)
    scene.image[window][ground] *= 0.55


def _add_superstructures(scene, rng, window, roof, inside, pitched, u, v, half_u, half_v) -> None:
    """A chimney, a PV array, a roof window or a dormer on some faces, labelled in RID's classes."""
    image, labels, height = scene.image[window], scene.superstructures[window], scene.height[window]
    items = [
        (0, (0.35, 0.45), (30, 40, 90)),  # pvmodule: dark blue, wide
        (1, (0.15, 0.2), None),  # dormer: a small raised box, shaded like the roof
        (2, (0.08, 0.1), (150, 190, 215)),  # window: light blue glass
        (4, (0.05, 0.06), (60, 55, 55)),  # chimney: dark and raised
    ]
    for cls, (frac_u, frac_v), colour in items:
        if rng.random() < 0.5:
            continue
        cu = rng.uniform(-0.5, 0.5) * half_u
        cv = rng.uniform(0.3, 0.6) * half_v * rng.choice([-1, 1])
        patch = (
            inside
            & (np.abs(u - cu) <= max(frac_u * half_u, 1.5))
            & (np.abs(v - cv) <= max(frac_v * half_v, 1.5))
        )
        if cls in (0, 2):
            patch &= pitched | (roof.slope_u == 0)
        patch &= labels == SUPERSTRUCTURE_BACKGROUND
        if patch.sum() < 3:
            continue
        labels[patch] = cls
        if colour is not None:
            image[patch] = np.asarray(colour, np.float32) + rng.normal(0, 5, (int(patch.sum()), 1))
        else:
            image[patch] *= 1.25
        if cls in (1, 4):
            height[patch] += 1.0 if cls == 1 else 1.5


def finish_scene(scene: Scene, rng: np.random.Generator) -> Scene:
    """Sensor noise and quantisation: the float canvas becomes a uint8 RGB image."""
    scene.image = np.clip(scene.image + rng.normal(0, 3, scene.image.shape), 0, 255).astype(np.uint8)
    scene.height = scene.height.astype(np.float32)
    return scene


def render_scene(
    height: int,
    width: int,
    rng: np.random.Generator,
    cell: int | None = None,
    centred: bool = False,
    kinds: tuple[str, ...] = BUILDING_KINDS,
) -> Scene:
    """One scene of `height` x `width` pixels.

    `centred=True` puts one large building in the middle (RID's roof-centred images) plus
    neighbours; buildings are scattered over a jittered grid of `cell`-pixel cells (default: a third
    of the scene), each building 45-70 % of a cell long.
    """
    scene = empty_scene(height, width, rng)
    if centred:
        size = min(height, width) * rng.uniform(0.45, 0.6)
        add_building(scene, rng, (height / 2, width / 2), size, kind=str(rng.choice(kinds)))
    cell = cell or max(min(height, width) // 3, 32)
    for row in range(cell // 2, height, cell):
        for col in range(cell // 2, width, cell):
            if rng.random() < 0.25:
                continue
            jitter = rng.uniform(-cell / 6, cell / 6, 2)
            size = cell * rng.uniform(0.45, 0.7)
            add_building(scene, rng, (row + jitter[0], col + jitter[1]), size, kind=str(rng.choice(kinds)))
    return finish_scene(scene, rng)
