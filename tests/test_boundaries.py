"""The architecture's boundaries, checked on the source: who may import and read what.

- `common/` knows no domain; domains never import each other.
- A task never reads its datamodule's attributes through the trainer, and a datamodule never reads the
  task's: statistics go through `fitted_statistics` / `receive_statistics` (common.task, common.data).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOMAINS = ("roofnet", "fwi", "housebrain", "landcover")
# The hand-off rule applies to every domain on the base classes.
ON_BASE_CLASSES = DOMAINS  # every domain
REACHING_ACROSS = re.compile(r"trainer\.datamodule|trainer\.lightning_module|getattr\(datamodule\b")


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ["common", *DOMAINS])
def test_imports_respect_the_layers(package: str) -> None:
    allowed = {"common"} if package == "common" else {"common", package}
    for path in sorted((REPO / package).rglob("*.py")):
        foreign = imported_packages(path) & (set(DOMAINS) | {"common"}) - allowed
        assert not foreign, f"{path.relative_to(REPO)} imports {sorted(foreign)}"


@pytest.mark.parametrize("domain", ON_BASE_CLASSES)
def test_tasks_and_datamodules_do_not_read_each_other(domain: str) -> None:
    for path in sorted((REPO / domain).rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not REACHING_ACROSS.search(line), f"{path.relative_to(REPO)}:{number}: {line.strip()}"
