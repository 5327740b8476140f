"""FWI loader: memory-mapped ShotGatherDataset against the reference whole-file `np.load` per sample.

    .venv/bin/python benchmarks/fwi_loader.py [--files 8] [--samples-per-file 100] [--reference-samples 8]

Writes `--files` OpenFWI-shaped files (random values; only bytes matter) under a temporary folder and
their float16 cache (`mtl fwi cache`, what float16 recipes train on), warms the page cache, then
measures, in one run, each over ten epochs of every sample (batch 32), best epoch after the first:
  - in-process reads: every sample copied from the memory maps into one reused batch in this process,
    no loader: what any loader's reads cost here, the baseline of the >= 90% target;
  - ours: FwiDataModule's loader with one worker, as a thread (`worker_type: thread`) and as a
    persistent process (reused shared-memory batches, and a fresh shared-memory batch each time),
    for the float32 files, and the thread worker over the float16 cache;
  - reference: samples/s of `np.load(file)[i]` per sample (what users reported as "9 days an epoch");
  - overlap: the same loaders while the training thread runs a stand-in compute step per batch;
  - memory: peak RSS and owned memory (proportional anonymous + shared-memory pages, i.e. without the
    page cache of the mapped files) of the loader process tree when reading 1 file vs all files, to
    show memory stays flat in the number of files.
Prints the ratios ours / in-process reads and ours / reference. Real OpenFWI files hold 500 samples;
the reference cost grows with the file size, so the ratio printed here for small files is a lower bound.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from common.thread_workers import ThreadedDataLoader
from fwi.data.cache import convert_to_float16
from fwi.data.datamodule import BATCH_RING
from fwi.data.datasets import BatchedReads, ShotGatherDataset, collate_skipping_bad, thread_batch_ring
from fwi.data.formats import discover_pairs


def write_files(root: Path, files: int, per_file: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(1, files + 1):
        (root / "FlatVel-A/data").mkdir(parents=True, exist_ok=True)
        (root / "FlatVel-A/model").mkdir(parents=True, exist_ok=True)
        seismic = np.lib.format.open_memmap(
            root / f"FlatVel-A/data/data{i}.npy", "w+", np.float32, (per_file, 5, 1000, 70)
        )
        for start in range(0, per_file, 50):
            n = min(50, per_file - start)
            seismic[start : start + n] = rng.standard_normal((n, 5, 1000, 70), dtype=np.float32)
        seismic.flush()
        del seismic
        velocity = rng.uniform(1500, 4500, (per_file, 1, 70, 70)).astype(np.float32)
        np.save(root / f"FlatVel-A/model/model{i}.npy", velocity)


def owned_memory(pid: int) -> int | None:
    """Proportional anonymous + shared-memory bytes of `pid` (Linux smaps_rollup), None elsewhere.

    Page-cache pages of the memory-mapped files are left out (the kernel can drop them at any time), and
    pages a forked worker still shares copy-on-write with its parent are counted once, not twice as
    RSS minus shared would.
    """
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines()[1:])
    return sum(int(fields[key].split()[0]) * 1024 for key in ("Pss_Anon", "Pss_Shmem"))


def tree_memory() -> tuple[int, int]:
    """(RSS, owned memory) summed over this process and its children, bytes (see `owned_memory`)."""
    processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
    rss = owned = 0
    for process in processes:
        try:
            info = process.memory_info()
        except psutil.NoSuchProcess:
            continue
        rss += info.rss
        proportional = owned_memory(process.pid)
        owned += info.rss - info.shared if proportional is None else proportional
    return rss, owned


def make_loader(pairs, worker_type: str, batch_size: int = 32, batch_ring: int | None = None):
    """The loader FwiDataModule builds for one worker of `worker_type` ("thread" or "process"; else none).

    `batch_ring` None: the module's ring (`thread_batch_ring(1)`, or 4 per process and in process,
    where a batch is read when the one before is done with); 0: a fresh batch every time. Process
    workers persist between epochs, as they do for training.
    """
    threads, processes = int(worker_type == "thread"), int(worker_type == "process")
    if batch_ring is None:
        batch_ring = thread_batch_ring(1) if threads else BATCH_RING
    return ThreadedDataLoader(
        BatchedReads(ShotGatherDataset(pairs, batch_ring=batch_ring)),
        batch_size=batch_size,
        num_workers=processes,
        worker_threads=threads,
        persistent_workers=bool(processes),
        collate_fn=collate_skipping_bad,
    )


def compute_step(batch: dict, weight: torch.Tensor) -> None:
    """A stand-in training step on the training thread: one matrix product over the batch's traces
    (torch releases the GIL inside it, as it does in a model's forward and backward)."""
    traces = batch["seismic"].reshape(-1, 70)[:20000]
    traces @ weight


def epoch_speeds(
    loader, epochs: int = 10, sample_memory: bool = False, step_weight: torch.Tensor | None = None
) -> tuple[float, int, int]:
    """(best samples/s over the epochs after the first, peak RSS, peak owned memory).

    The first epoch starts the worker, opens the memory maps and fills the batch ring; the later ones
    are what a training run sees from its second epoch on. Memory is sampled only when asked (it costs
    time); other processes on shared cores only ever slow an epoch down, hence the best.
    `step_weight`: run `compute_step` on every batch, so the worker has to overlap with it.
    """
    speeds, peak_rss, peak_owned = [], 0, 0
    for _ in range(epochs):
        start, count = time.perf_counter(), 0
        for batch in loader:
            count += batch["seismic"].shape[0]
            if step_weight is not None:
                compute_step(batch, step_weight)
            if sample_memory:
                rss, owned = tree_memory()
                peak_rss, peak_owned = max(peak_rss, rss), max(peak_owned, owned)
        speeds.append(count / (time.perf_counter() - start))
    return max(speeds[1:] or speeds), peak_rss, peak_owned


def in_process_reads(pairs, batch_size: int = 32, epochs: int = 10) -> float:
    """Samples/s of reading every sample into one reused batch in this process (no loader at all):
    best over the epochs after the first, like `epoch_speeds`."""
    dataset = ShotGatherDataset(pairs)
    seismic, velocity = torch.empty(batch_size, 5, 1000, 70), torch.empty(batch_size, 1, 70, 70)
    speeds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for item in range(len(dataset)):
            dataset._read_into(item, seismic[item % batch_size], velocity[item % batch_size])
        speeds.append(len(dataset) / (time.perf_counter() - start))
    return max(speeds[1:])


def first_touch_rate(batch_size: int = 32, repeats: int = 12) -> float:
    """MB/s of first-touching fresh memory: the cap of a loader that allocates every batch anew."""
    nbytes = batch_size * 5 * 1000 * 70 * 4
    start = time.perf_counter()
    for _ in range(repeats):
        torch.empty(batch_size, 5, 1000, 70).fill_(0)
    return repeats * nbytes / 1e6 / (time.perf_counter() - start)


def run_reference(pairs, samples: int) -> float:
    start = time.perf_counter()
    for k in range(samples):
        pair = pairs[k % len(pairs)]
        seismic = np.load(pair.seismic)[k % pair.count]
        velocity = np.load(pair.velocity)[k % pair.count]
        torch.from_numpy(seismic.copy()), torch.from_numpy(velocity.copy())
    return samples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--samples-per-file", type=int, default=100)
    parser.add_argument("--reference-samples", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_files(root, args.files, args.samples_per_file)
        pairs = discover_pairs(root)
        convert_to_float16(root, root / "float16")
        half_pairs = discover_pairs(root / "float16")
        epoch_speeds(make_loader(pairs, "thread"), epochs=1)  # warm the page cache
        epoch_speeds(make_loader(half_pairs, "thread"), epochs=1)
        reads = in_process_reads(pairs)
        thread_speed = epoch_speeds(make_loader(pairs, "thread"))[0]
        process_speed = epoch_speeds(make_loader(pairs, "process"))[0]
        fresh_speed = epoch_speeds(make_loader(pairs, "process", batch_ring=0))[0]
        half_speed = epoch_speeds(make_loader(half_pairs, "thread"))[0]
        weight = torch.randn(70, 70) / 70**0.5
        with_step = {
            kind: epoch_speeds(make_loader(pairs, kind), step_weight=weight)[0]
            for kind in ("thread", "process")
        }
        serial = epoch_speeds(make_loader(pairs, "in-process"), step_weight=weight)[0]
        memory = {
            (kind, n): epoch_speeds(make_loader(pairs[:n], kind), epochs=2, sample_memory=True)[1:]
            for kind in ("thread", "process")
            for n in (1, len(pairs))
        }
        reference = run_reference(pairs, args.reference_samples)
        touch = max(first_touch_rate() for _ in range(3))
    gib = 1024**3
    mb_per_file = args.samples_per_file * 5 * 1000 * 70 * 4 / 1e6
    load = ", ".join(f"{x:.1f}" for x in psutil.getloadavg())
    print(
        f"files: {args.files} x {args.samples_per_file} samples ({mb_per_file:.0f} MB each), page cache warm"
    )
    print(f"machine: {psutil.cpu_count()} CPUs, load average {load} (other processes share the cores)")
    print("samples/s, batch 32, best epoch after the first (worker started, maps open, ring filled):")
    print(f"  in-process reads into one reused batch (no loader):     {reads:8.1f}")
    print(f"  1 thread worker, float32 files (worker_type: thread):   {thread_speed:8.1f}")
    print(f"  1 worker process, float32 files, reused shm batches:    {process_speed:8.1f}")
    print(f"  1 worker process, float32 files, fresh shm batch each:  {fresh_speed:8.1f}")
    print(f"  1 thread worker, float16 cache (`mtl fwi cache`):       {half_speed:8.1f}")
    print(f"reference (np.load whole file per sample): {reference:8.1f} samples/s")
    print(f"ratio thread worker / reference: {thread_speed / reference:.1f}x")
    print(
        f"context: first touch of fresh memory {touch:.0f} MB/s (caps a loader that allocates every batch "
        f"at {touch / 1.4:.0f} samples/s)"
    )
    print(f"float32, 1 thread worker / in-process reads: {thread_speed / reads:.0%} (target >= 90%)")
    print(f"float32, 1 worker process / in-process reads: {process_speed / reads:.0%}")
    print(
        "with a compute step on the training thread per batch (a matmul over 20k traces), samples/s: "
        f"no worker {serial:.0f}, 1 thread worker {with_step['thread']:.0f} "
        f"({with_step['thread'] / serial:.2f}x), 1 worker process {with_step['process']:.0f} "
        f"({with_step['process'] / serial:.2f}x)"
    )
    for kind in ("thread", "process"):
        (one_rss, one_owned), (rss, owned) = memory[(kind, 1)], memory[(kind, len(pairs))]
        print(
            f"1 {kind} worker: peak RSS 1 file {one_rss / gib:.2f} GiB, {args.files} files {rss / gib:.2f} GiB; "
            f"owned (anonymous + shm, proportional) 1 file {one_owned / gib:.2f} GiB, {args.files} files "
            f"{owned / gib:.2f} GiB (loader process tree with torch included)"
        )


if __name__ == "__main__":
    main()
