"""Write notebooks/<domain>_quickstart.ipynb, one per domain, from one template (with nbformat).

    python notebooks/make_notebooks.py        # after changing the template or a domain's settings

Each notebook installs the project, picks storage that survives the platform (Google Drive on Colab,
/kaggle/working on Kaggle, or any fsspec URL such as s3://bucket/runs), trains the domain's quickstart
recipe with `--ckpt_path last` (so running the cell again after a disconnect resumes), shows the run
with `mtl runs status` and `mtl curves`, and loads the exported bundle. The first code cell carries the
tag "parameters" (papermill's convention): the tests replace it to run each notebook at a tiny size.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

DOMAINS = {
    "landcover": {
        "title": "Land cover: Sentinel-2 patch classification",
        "about": "the lab's baseline CNN on synthetic 32x32 Sentinel-2 patches (written on first use in the real NPZ layout)",
        "guide": "docs/landcover.md",
    },
    "fwi": {
        "title": "FWI: seismic full-waveform inversion",
        "about": "InversionNet on synthetic FlatVel-A shots (written on first use in the OpenFWI .npy layout)",
        "guide": "docs/fwi.md",
    },
    "roofnet": {
        "title": "Roofnet: roofs from aerial images",
        "about": "roof segments, lines and outlines on small synthetic RID, Roofline and AIRS sets",
        "guide": "docs/roofnet.md",
    },
    "housebrain": {
        "title": "HouseBrain: house designs from requirements",
        "about": "LoRA fine-tuning of a small chat model on synthetic house-design JSON",
        "guide": "docs/housebrain.md",
    },
}

PARAMETERS = """# Settings (the tests replace this cell to run the notebook at a tiny size).
PROJECT_GIT_URL = ""  # your copy of this project, e.g. "https://github.com/you/mtl.git"; "" = already here
PROJECT_DIR = "mtl" if PROJECT_GIT_URL else "."  # where the project is (cloned into ./mtl)
RECIPE = "configs/{domain}/quickstart.yaml"  # relative to PROJECT_DIR
RUN_NAME = "{domain}/quickstart"
# None: Drive on Colab, /kaggle/working/runs on Kaggle, ./runs elsewhere; or a URL like "s3://bucket/runs"
RUNS_DIR = None
EXTRA_FIT_ARGS = []  # more `mtl fit` options, e.g. ["--trainer.max_epochs", "2"]
"""

SETUP = """import os
import shlex
import subprocess
import sys
from pathlib import Path

ON_COLAB = "COLAB_RELEASE_TAG" in os.environ or "COLAB_GPU" in os.environ
ON_KAGGLE = "KAGGLE_KERNEL_RUN_TYPE" in os.environ


def sh(command: str) -> None:
    # Run a shell command, show it, and stop the notebook if it fails (a `!command` would not).
    print("$", command, flush=True)
    subprocess.run(command, shell=True, check=True)


if PROJECT_GIT_URL and not Path(PROJECT_DIR, "pyproject.toml").exists():
    sh(f"git clone --depth 1 {shlex.quote(PROJECT_GIT_URL)} {shlex.quote(PROJECT_DIR)}")
PROJECT = Path(PROJECT_DIR).resolve()
try:
    import common.cli
except ImportError:
    sh(f"{shlex.quote(sys.executable)} -m pip install -q -e {shlex.quote(str(PROJECT))}")
    sys.path.insert(0, str(PROJECT))  # this kernel started before the install
    import common.cli

# `mtl(["fit", ...])` is the `mtl fit ...` command run in this kernel (a terminal takes the same words).
mtl = common.cli.main
print("project:", PROJECT)
"""

STORAGE = """# Runs must outlive the machine: Colab's disk is wiped at a disconnect and Kaggle keeps
# /kaggle/working only when you save a version. A URL (s3://, gs://) needs its fsspec package (s3fs, gcsfs)
# and credentials in the environment.
if RUNS_DIR is None:
    if ON_COLAB:
        from google.colab import drive

        drive.mount("/content/drive")
        RUNS_DIR = "/content/drive/MyDrive/mtl-runs"
    elif ON_KAGGLE:
        RUNS_DIR = "/kaggle/working/runs"
    else:
        RUNS_DIR = "runs"
RUN_DIR = f"{RUNS_DIR.rstrip('/')}/{RUN_NAME}"
print("this run's directory:", RUN_DIR)
"""

TRAIN = """# Train. `--ckpt_path last` resumes from the newest checkpoint of this run when there is one (after a
# disconnect, run the cells again from the top); on the first run it starts fresh.
recipe = str(PROJECT / RECIPE)
fit = ["fit", "--config", recipe, "--name", RUN_NAME, "--runs_dir", RUNS_DIR, "--ckpt_path", "last"]
mtl([*fit, *EXTRA_FIT_ARGS])
"""

WATCH = """from IPython.display import Image, display

# Progress, metrics, speed, ETA and state of every run in the runs directory. From your laptop, the
# same command watches runs on several machines at once (a synced folder or a bucket URL), refreshing:
#   mtl runs status /path/to/synced/mtl-runs s3://bucket/runs --watch 30
mtl(["runs", "status", RUNS_DIR])
mtl(["curves", "--run_dir", RUN_DIR, "--out", "curves.png"])
display(Image("curves.png"))
"""

EXPORT = """from common.export import load_bundle

# The fit wrote an export bundle (weights as safetensors, config, metrics) into the run directory;
# `mtl export` makes one from any checkpoint. Either loads without the training code's state.
bundle = f"exported_{RUN_NAME.replace('/', '_')}"
mtl(["export", f"{RUN_DIR}/checkpoints/last.ckpt", "--out", bundle])
model = load_bundle(bundle)
print(type(model).__name__, sum(p.numel() for p in model.parameters()), "parameters")
"""


def quickstart_notebook(domain: str, settings: dict[str, str]) -> nbformat.NotebookNode:
    """The quickstart notebook of one domain."""
    intro = (
        f"# {settings['title']}: quickstart on Colab, Kaggle or a laptop\n\n"
        f"Trains {settings['about']}, on a GPU if the runtime has one (Colab: Runtime > Change runtime type "
        f"> T4 GPU; Kaggle: Settings > Accelerator), else on the CPU in minutes. The guide is "
        f"`{settings['guide']}`; the runs commands are in `docs/runs.md`.\n\n"
        "1. **Settings**: where the project comes from, the recipe, where runs are kept.\n"
        "2. **Install** the project into this runtime.\n"
        "3. **Storage** that survives a disconnect.\n"
        "4. **Train**, resuming when the run already has a checkpoint.\n"
        "5. **Watch** with `mtl runs status` and `mtl curves`.\n"
        "6. **Export** and load the bundle."
    )
    parameters = new_code_cell(PARAMETERS.format(domain=domain).strip())
    parameters.metadata["tags"] = ["parameters"]
    cells = [
        new_markdown_cell(intro),
        parameters,
        new_markdown_cell("## Install"),
        new_code_cell(SETUP.strip()),
        new_markdown_cell("## Storage"),
        new_code_cell(STORAGE.strip()),
        new_markdown_cell("## Train (with resume)"),
        new_code_cell(TRAIN.strip()),
        new_markdown_cell("## Watch"),
        new_code_cell(WATCH.strip()),
        new_markdown_cell("## Export"),
        new_code_cell(EXPORT.strip()),
    ]
    for number, cell in enumerate(cells):  # stable ids: regenerating changes nothing that did not change
        cell.id = f"{domain}-{number:02d}"
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    return notebook


def write_notebooks(out_dir: Path = HERE) -> list[Path]:
    written = []
    for domain, settings in DOMAINS.items():
        path = out_dir / f"{domain}_quickstart.ipynb"
        notebook = quickstart_notebook(domain, settings)
        nbformat.validate(notebook)
        nbformat.write(notebook, path)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_notebooks():
        print(f"wrote {path}")
