"""Each notebooks/<domain>_quickstart.ipynb runs top to bottom on the CPU in a real Jupyter kernel
(nbclient), at a tiny size: install check, storage, training with resume, `mtl runs status`, curves,
export. The settings are overridden papermill's way: a cell injected after the "parameters" cell."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

NOTEBOOKS = REPO / "notebooks"
LANDCOVER_TINY = [
    "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
    "--data.synthetic_samples", "160", "--data.synthetic_size", "16", "--data.batch_size", "16",
    "--model.init_args.width", "4", "--model.init_args.depth", "2", "--model.init_args.example_size", "16",
]  # fmt: skip
FWI_TINY = """\
trainer: {max_epochs: 1, enable_progress_bar: false, log_every_n_steps: 1}
model: {init_args: {model_args: {width: 0.125}}}
data: {init_args: {synthetic_samples: 8, synthetic_samples_per_file: 4, batch_size: 4}}
"""
ROOFNET_TINY = [
    "--trainer.max_epochs", "3", "--trainer.check_val_every_n_epoch", "3", "--trainer.limit_train_batches", "2",
    "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false", "--data.image_size", "32",
    "--data.batch_size", "2", "--data.max_val_samples", "2", "--data.synthetic_samples", "8",
    "--data.synthetic_image_size", "64", "--data.synthetic_airs_tile_size", "320",
    "--trainer.num_sanity_val_steps", "0", "--model.encoder", "tu-test_efficientnet",
    "--model.decoder_channels", "[16, 16, 16, 16, 16]",
]  # fmt: skip


def execute(
    notebook_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **settings
) -> nbformat.NotebookNode:
    """Run a notebook in a fresh python3 kernel of this environment, working directory `tmp_path`."""
    notebook = nbformat.read(notebook_path, as_version=4)
    nbformat.validate(notebook)
    position = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    overrides = "\n".join(f"{key} = {value!r}" for key, value in settings.items())
    notebook.cells.insert(
        position + 1, nbformat.v4.new_code_cell(overrides, metadata={"tags": ["injected-parameters"]})
    )
    # The kernelspec runs `python` from PATH: this environment's, with the project importable.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    client = NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    return notebook


def cell_text(notebook: nbformat.NotebookNode, marker: str) -> str:
    """Everything a code cell containing `marker` printed."""
    cell = next(c for c in notebook.cells if c.cell_type == "code" and marker in c.source)
    return "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in cell.outputs)


def check_run(notebook: nbformat.NotebookNode, tmp_path: Path, run_name: str, model_class: str) -> None:
    run = tmp_path / "runs" / run_name
    assert (run / "checkpoints/last.ckpt").is_file() and list(run.glob("events.out.tfevents.*"))
    status = cell_text(notebook, "runs status")
    assert run_name in status and "finished" in status, status
    assert (tmp_path / "curves.png").stat().st_size > 5_000
    assert any(o.get("data", {}).get("image/png") for c in notebook.cells for o in c.get("outputs", []))
    assert model_class in cell_text(notebook, "load_bundle(bundle)")
    assert (tmp_path / f"exported_{run_name.replace('/', '_')}").is_dir()


def test_every_domain_has_a_quickstart_notebook_matching_its_generator(tmp_path: Path) -> None:
    sys.path.insert(0, str(NOTEBOOKS))
    try:
        from make_notebooks import DOMAINS, write_notebooks
    finally:
        sys.path.remove(str(NOTEBOOKS))
    assert set(DOMAINS) == {p.name for p in REPO.iterdir() if (p / "tools.py").is_file()}
    for fresh in write_notebooks(tmp_path):  # the committed notebooks are the generator's output
        assert fresh.read_text() == (NOTEBOOKS / fresh.name).read_text(), (
            f"rerun notebooks/make_notebooks.py: {fresh.name}"
        )


def test_landcover_notebook_runs_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = execute(
        NOTEBOOKS / "landcover_quickstart.ipynb", tmp_path, monkeypatch,
        PROJECT_DIR=str(REPO), RUNS_DIR=str(tmp_path / "runs"), EXTRA_FIT_ARGS=LANDCOVER_TINY,
    )  # fmt: skip
    check_run(notebook, tmp_path, "landcover/quickstart", "LandCoverTask")


@pytest.mark.slow  # a minute or more each on the shared 2-core machine
@pytest.mark.parametrize(
    ("domain", "model_class"), [("fwi", "VelocityInversionTask"), ("roofnet", "RoofTask")]
)
def test_domain_notebook_runs_top_to_bottom(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, domain: str, model_class: str
) -> None:
    if domain == "fwi":
        (tmp_path / "small.yaml").write_text(FWI_TINY)
        extra = ["--config", str(tmp_path / "small.yaml")]
    else:
        extra = ROOFNET_TINY
    notebook = execute(
        NOTEBOOKS / f"{domain}_quickstart.ipynb", tmp_path, monkeypatch,
        PROJECT_DIR=str(REPO), RUNS_DIR=str(tmp_path / "runs"), EXTRA_FIT_ARGS=extra,
    )  # fmt: skip
    check_run(notebook, tmp_path, f"{domain}/quickstart", model_class)


@pytest.mark.slow  # the LoRA fine-tuning of a tiny Llama written by the test
def test_housebrain_notebook_runs_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from housebrain.models.causal_lm import ensure_tiny_llama

    tiny = ensure_tiny_llama(tmp_path / "tiny-llama", samples=80)
    extra = ["--model.init_args.model_path", str(tiny), "--data.init_args.tokenizer", str(tiny),
             "--model.init_args.eval_generate_samples", "0",
             "--trainer.max_steps", "2", "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
             "--data.init_args.synthetic_samples", "24", "--data.init_args.batch_size", "1"]  # fmt: skip
    notebook = execute(
        NOTEBOOKS / "housebrain_quickstart.ipynb", tmp_path, monkeypatch,
        PROJECT_DIR=str(REPO), RUNS_DIR=str(tmp_path / "runs"), EXTRA_FIT_ARGS=extra,
    )  # fmt: skip
    check_run(notebook, tmp_path, "housebrain/quickstart", "HouseDesignSFT")
