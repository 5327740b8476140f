"""The ten OpenFWI families, their on-disk layouts and the acquisition geometry they share.

A family's index in `FAMILIES` is what batches carry (`family`) and what the task's per-family
normalisation buffers are indexed by, so it must never be reordered.
"""

from __future__ import annotations

from common.errors import UserInputError

FAMILIES: tuple[str, ...] = (
    "FlatVel-A",
    "FlatVel-B",
    "CurveVel-A",
    "CurveVel-B",
    "FlatFault-A",
    "FlatFault-B",
    "CurveFault-A",
    "CurveFault-B",
    "Style-A",
    "Style-B",
)
UNKNOWN_FAMILY = -1  # Kaggle test files carry no family

# Shapes of one sample (OpenFWI / Kaggle GWI).
N_SOURCES, N_TIME, N_RECEIVERS = 5, 1000, 70
DEPTH, WIDTH = 70, 70
SEISMIC_SHAPE = (N_SOURCES, N_TIME, N_RECEIVERS)
VELOCITY_SHAPE = (1, DEPTH, WIDTH)
SAMPLES_PER_FILE = 500

# Acquisition: dx = 10 m, dt = 1 ms, 15 Hz Ricker, sources and receivers at depth index 1.
GRID_SPACING_M = 10.0
TIME_STEP_S = 0.001
PEAK_FREQUENCY_HZ = 15.0
SOURCE_X = (0, 17, 34, 52, 69)
ACQUISITION_DEPTH = 1
VELOCITY_MIN, VELOCITY_MAX = 1500.0, 4500.0


def _key(name: str) -> str:
    return name.replace("-", "").replace("_", "").replace(" ", "").lower()


_BY_KEY = {_key(name): name for name in FAMILIES}


def canonical_family(name: str) -> str:
    """`FlatVel_A`, `flatvel-a` or `FlatVel-A` -> `FlatVel-A`; raises ValueError for anything else."""
    try:
        return _BY_KEY[_key(name)]
    except KeyError:
        raise UserInputError(
            f"unknown OpenFWI family {name!r}; expected one of {', '.join(FAMILIES)}"
        ) from None


def is_family_name(name: str) -> bool:
    return _key(name) in _BY_KEY


def family_index(name: str) -> int:
    return FAMILIES.index(canonical_family(name))


def family_kind(name: str) -> str:
    """`vel`, `fault` or `style`: which file naming the family uses and which generator draws it."""
    family = canonical_family(name)
    if "Fault" in family:
        return "fault"
    if family.startswith("Style"):
        return "style"
    return "vel"


def fault_prefix(name: str) -> int:
    """First P of the fault families' `seis{P}_1_{i}.npy` names: 2 for the A families, 6 for B."""
    return 2 if canonical_family(name).endswith("A") else 6
