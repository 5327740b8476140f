"""Domain verbs: one spelling (hyphens), the Python spelling accepted too."""

from __future__ import annotations

from common.cli import verb_spelling


def test_verbs_take_hyphens_and_underscores_alike() -> None:
    commands = {"import-openfwi": print, "check": print}
    assert verb_spelling("import_openfwi", commands) == "import-openfwi"
    assert verb_spelling("import-openfwi", commands) == "import-openfwi"
    assert verb_spelling("check", commands) == "check"
    assert verb_spelling("chekc", commands) == "chekc"  # jsonargparse then names the valid choices
