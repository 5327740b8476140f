"""Pseudo-labels: a model's predictions on unlabelled gathers, forward-modelled into training data.

The first-placed Kaggle GWI 2025 loop: predict the test gathers, simulate the predicted velocity maps with
the same physics as the generator, and train on the pairs (simulated gathers, predicted map). The pairs
are self-consistent by construction, and their maps follow the test set's geology as far as the model
got it right.

Layout written under `<out>`:

    predictions/model1.npy ...      predicted maps, (n, 1, 70, 70) float32 m/s, `samples_per_file` a file
    predictions/oids.json           which test file each predicted sample came from, in order
    <family>/data/data1.npy ...     simulated gathers (OpenFWI layout), with
    <family>/model/model1.npy ...   the predicted maps they were simulated from

`<family>` is a name the datamodule knows (e.g. `FlatVel-A`): Kaggle test files have no known family, so
the user names the one whose per-family limits and metrics the pseudo-labels should count under (with
`normalization: global`, as the Kaggle recipe trains, the name only labels the metrics). Predictions
already written are kept (the simulation resumes as `mtl fwi forward` does), so an interrupted run
continues.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from common.errors import UserInputError
from fwi.data.families import SAMPLES_PER_FILE, canonical_family


def write_pseudo_labels(
    checkpoint: str | Path,
    test_dir: str | Path,
    out: str | Path,
    family: str,
    tta: bool = False,
    batch_size: int = 16,
    samples_per_file: int = SAMPLES_PER_FILE,
    device: str = "cpu",
) -> list[Path]:
    """Predict `test_dir`, then simulate the predictions into `<out>/<family>/`; returns the gather files."""
    from fwi.data.datasets import KaggleTestDataset
    from fwi.data.formats import kaggle_test_files
    from fwi.data.forward_files import forward_velocity_files
    from fwi.submission import check_prediction, load_task, predict_velocity

    family = canonical_family(family)
    out = Path(out)
    predictions = out / "predictions"
    predictions.mkdir(parents=True, exist_ok=True)
    files = kaggle_test_files(test_dir)
    oids_file = predictions / "oids.json"
    oids = [Path(f).stem for f in files]
    if oids_file.is_file() and json.loads(oids_file.read_text()) != oids:
        raise UserInputError(
            f"{oids_file}: these pseudo-labels were predicted from other test files; choose another --out"
        )
    if not all(
        (predictions / f"model{n + 1}.npy").is_file() for n in range(-(-len(oids) // samples_per_file))
    ):
        task = load_task(checkpoint, device)
        loader = DataLoader(KaggleTestDataset(files), batch_size=batch_size)
        chunk: list[np.ndarray] = []
        written = 0
        for batch in loader:
            velocity = predict_velocity(task, batch["seismic"], tta=tta).cpu().numpy().astype(np.float32)
            for oid, field in zip(batch["oid"], velocity, strict=True):
                check_prediction(field, oid)
                chunk.append(field[None])
                if len(chunk) == samples_per_file:
                    written += 1
                    np.save(predictions / f"model{written}.npy", np.stack(chunk))
                    chunk = []
        if chunk:
            np.save(predictions / f"model{written + 1}.npy", np.stack(chunk))
        oids_file.write_text(json.dumps(oids) + "\n")
    return forward_velocity_files(predictions, out / family, device=device)
