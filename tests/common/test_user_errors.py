"""One user-error path: a bad input a user gives `mtl` ends in one `mtl: error:` line and exit status 1."""

from __future__ import annotations

import pytest
import torch


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("mtl: error:")]


def test_a_yaml_syntax_error_names_the_file_and_line(mtl, tmp_path) -> None:
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("model:\n  class_path: x\n   init_args: [\n")
    output = mtl(["fit", "--config", str(recipe)], expect_ok=False).stdout
    assert error_lines(output) == [error_lines(output)[0]]
    assert f"mtl: error: {recipe}: not valid YAML at line 3" in output
    assert "Traceback" not in output and "<unicode string>" not in output
    output = mtl(["fit", "--config", "missing.yaml"], expect_ok=False).stdout
    assert "mtl: error: missing.yaml: config file not found" in output


def test_a_data_error_inside_fit_is_one_line_and_debug_shows_the_traceback(mtl, tmp_path) -> None:
    args = [
        "fit",
        "--model",
        "tests.common.models.TinyBaseTask",
        "--data",
        "tests.common.models.TinyBaseDataModule",
        "--trainer.max_steps",
        "1",
        "--model.optimizer",
        "lamb",
    ]
    output = mtl(args, expect_ok=False).stdout
    assert error_lines(output) == [
        "mtl: error: model.optimizer: expected one of adamw, adam, sgd, got 'lamb'"
    ]
    assert "Traceback" not in output
    import os

    os.environ["MTL_DEBUG"] = "1"
    try:
        output = mtl(args, expect_ok=False).stdout
    finally:
        del os.environ["MTL_DEBUG"]
    assert "Traceback" in output and "UserInputError" in output


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x13\x37 not a checkpoint at all" * 40, "not a readable PyTorch checkpoint"),
        (None, "holds Python objects (exec)"),
    ],
)
def test_a_foreign_checkpoint_is_refused_without_advice_to_load_it_unsafely(
    mtl, tmp_path, content, expected
) -> None:
    path = tmp_path / "foreign.ckpt"
    if content is None:

        class Payload:
            def __reduce__(self):
                return (exec, ("print('ran')",))

        torch.save({"state_dict": Payload()}, path)
    else:
        path.write_bytes(content)
    output = mtl(["export", str(path), "--out", str(tmp_path / "bundle")], expect_ok=False).stdout
    assert error_lines(output) and expected in error_lines(output)[0]
    assert "weights_only=False" not in output and "add_safe_globals" not in output and "ran" not in output


def test_export_refuses_an_existing_file_as_out_before_loading(mtl, tmp_path) -> None:
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    output = mtl(["export", str(tmp_path / "missing.ckpt"), "--out", str(taken)], expect_ok=False).stdout
    assert error_lines(output) == [
        f"mtl: error: {taken}: --out must be a directory for the bundle, but a file of that name exists"
    ]
    assert taken.read_text() == "mine"
