"""The JSON contract: what a user asks for (`Requirements`) and what the model answers (`HouseDesign`).

Units are metres, square metres and the requirements' currency. Rooms are axis-aligned rectangles
`rect = [x, y, width, depth]` (x to the right, y from the street front into the plot, origin at the
plot's front-left corner), or polygons `[[x, y], ...]` for non-rectangular rooms. The field names are
short on purpose: the design JSON is what the language model writes, and every character is tokens
inside a 512-token training window.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RoomType = Literal[
    "living",
    "kitchen",
    "dining",
    "bedroom",
    "study",
    "bathroom",
    "toilet",
    "hall",
    "stairs",
    "utility",
    "garage",
    "storage",
    "closet",
]
#: Rooms IRC R202 counts as habitable space (sleeping, living, eating, cooking).
HABITABLE_TYPES = frozenset({"living", "kitchen", "dining", "bedroom", "study"})
BATHROOM_TYPES = frozenset({"bathroom", "toilet"})
STYLES = ("modern", "traditional", "craftsman", "minimalist", "colonial")
EXTERIOR = "exterior"
#: Garage separation linings (IRC Table R302.6): 1/2 in (12.7 mm) gypsum board on the garage side of
#: walls to the house; 5/8 in (15.9 mm) Type X gypsum board when habitable rooms are above the garage.
SEPARATIONS = ("gypsum_13mm", "type_x_16mm")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Requirements(_Strict):
    """What the client asks for."""

    plot: tuple[float, float] = Field(description="plot width (street frontage) and depth, m")
    setback_m: float = Field(1.5, ge=0, description="clear strip kept on every side of the plot")
    floors: int = Field(ge=1, le=4)
    bedrooms: int = Field(ge=0, le=12)
    bathrooms: int = Field(ge=0, le=12)
    budget: float = Field(gt=0)
    currency: str = "USD"
    style: str = "modern"
    code: str = "IRC-2021"
    garage: bool = Field(False, description="an attached garage is wanted")
    accessible: bool = Field(False, description="a bedroom and a full bathroom on the ground floor")

    @model_validator(mode="after")
    def _plot_positive(self) -> Requirements:
        if min(self.plot) <= 2 * self.setback_m:
            raise ValueError(
                f"plot {list(self.plot)} leaves no buildable area inside a {self.setback_m} m setback"
            )
        return self


class Stair(_Strict):
    """A straight flight from this level to the next: `risers` equal risers, `risers - 1` treads.

    The run `(risers - 1) * tread_m` and a bottom landing lie inside the stairs room along its long side;
    the stairs room directly above is the opening in the floor (headroom) and the top landing."""

    risers: int = Field(ge=1)
    riser_m: float = Field(gt=0)
    tread_m: float = Field(gt=0)


class Opening(_Strict):
    """An emergency escape and rescue opening (IRC R310): net clear width and height, sill above floor."""

    w: float = Field(gt=0)
    h: float = Field(gt=0)
    sill: float = Field(ge=0)


class Room(_Strict):
    """One room. Exactly one of `rect` and `polygon` gives its footprint.

    Room types imply their fixtures: a `bathroom` has a water closet, a lavatory and a bathtub or
    shower; a `toilet` a water closet and a lavatory; a `kitchen` a sink (IRC R306)."""

    id: str
    type: RoomType
    rect: tuple[float, float, float, float] | None = None
    polygon: list[tuple[float, float]] | None = None
    ceiling_m: float | None = Field(None, gt=0, description="clear ceiling height; default: the level's")
    window_m2: float = Field(0.0, ge=0, description="glazed area of exterior windows")
    doors: list[str] = Field(default_factory=list, description="ids of rooms (or 'exterior') a door leads to")
    stair: Stair | None = Field(None, description="stairs rooms below the top level: the flight")
    egress: Opening | None = Field(None, description="bedrooms: the emergency escape opening")
    separation: Literal["gypsum_13mm", "type_x_16mm"] | None = Field(
        None, description="garages: the lining separating them from the house (IRC R302.6)"
    )

    @model_validator(mode="after")
    def _one_footprint(self) -> Room:
        if (self.rect is None) == (self.polygon is None):
            raise ValueError("give exactly one of rect [x, y, w, d] and polygon [[x, y], ...]")
        if self.rect is not None and min(self.rect[2], self.rect[3]) <= 0:
            raise ValueError(f"rect width and depth must be positive, got {list(self.rect)}")
        if self.polygon is not None and len(self.polygon) < 3:
            raise ValueError("polygon needs at least 3 vertices")
        return self


class Level(_Strict):
    level: int = Field(ge=0)
    height_m: float = Field(gt=0, description="floor-to-ceiling height")
    floor_m: float = Field(
        0.3, ge=0, description="floor structure above this level; storey = height_m + floor_m"
    )
    rooms: list[Room] = Field(min_length=1)


class Totals(_Strict):
    area_m2: float = Field(ge=0)
    bedrooms: int = Field(ge=0)
    bathrooms: int = Field(ge=0)


class CostItem(_Strict):
    item: str
    qty: float = Field(ge=0)
    unit: str
    rate: float = Field(ge=0)
    amount: float = Field(ge=0)


class CostEstimate(_Strict):
    currency: str
    items: list[CostItem] = Field(min_length=1)
    total: float = Field(ge=0)


class Compliance(_Strict):
    code: str
    passed: bool
    notes: list[str] = Field(default_factory=list)


class Roof(_Strict):
    form: Literal["flat", "gable", "hip"]
    pitch_deg: float = Field(ge=0, le=60)


class HouseDesign(_Strict):
    levels: list[Level] = Field(min_length=1)
    roof: Roof | None = None
    totals: Totals
    cost: CostEstimate
    compliance: Compliance


class RefusalReasons(_Strict):
    reasons: list[Literal["budget", "plot"]] = Field(min_length=1)
    min_budget: float | None = Field(None, gt=0, description="cheapest design for the program")
    min_footprint_m: tuple[float, float] | None = Field(None, description="smallest footprint [w, d]")
    notes: list[str] = Field(default_factory=list)


class HouseRefusal(_Strict):
    """The answer to a request no design can meet: which limit is binding and by how much."""

    refusal: RefusalReasons


def reply_json_schema() -> dict:
    """JSON schema of a reply: a design or a refusal (what constrained decoding enforces)."""
    from pydantic import TypeAdapter

    return TypeAdapter(HouseDesign | HouseRefusal).json_schema()
