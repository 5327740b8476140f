"""`mtl serve` under a bounded load: requests/s, latency percentiles, errors, peak RSS, and the speed-up
of dynamic batching over batch 1 for the vision models, in one run.

For each domain a real server (`mtl serve` subprocess on 127.0.0.1) is started on a bundle, and
`--clients` threads each send `--requests` requests with httpx, one after the other. The vision
domains run twice, with `--max_batch_size 1` (the baseline) and `--max_batch_size B`; the ratio of
their requests/s is the batching speed-up. Peak RSS is the server process's (sampled every 50 ms).

Bundles: `--bundle landcover=runs/landcover/quickstart/export` (any domain), else the tiny untrained
bundles of the serving tests (same architectures as the quickstarts, smaller widths). Housebrain's
target from the project plan is < 5 s per design and < 8 GB.

    .venv/bin/python benchmarks/serving.py [--clients 8] [--requests 50] [--batch 16] [--domains landcover fwi]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VISION = ("landcover", "fwi", "roofnet")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request_for(domain: str, bundle: Path) -> dict[str, Any]:
    """One typical request of each domain (keyword arguments of httpx.post, and the path)."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    if domain == "landcover":
        size = json.loads((bundle / "bundle.json").read_text())["init_args"].get("example_size") or 32
        np.savez(buffer, image=rng.uniform(0, 0.4, (6, size, size)).astype(np.float32))
        return {"path": "/v1/predict", "files": {"file": ("patch.npz", buffer.getvalue())}}
    if domain == "fwi":
        np.save(buffer, rng.normal(0, 1, (5, 1000, 70)).astype(np.float32))
        return {"path": "/v1/predict", "files": {"file": ("shots.npy", buffer.getvalue())}}
    if domain == "roofnet":
        from PIL import Image

        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(buffer, format="PNG")
        return {
            "path": "/v1/predict",
            "files": {"image": ("tile.png", buffer.getvalue())},
            "params": {"window": 256},
        }
    requirements = {"plot": [14, 24], "floors": 1, "bedrooms": 2, "bathrooms": 1, "budget": 250000}
    return {"path": "/v1/designs", "json": requirements, "params": {"max_new_tokens": 256}}


def peak_rss_sampler(pid: int, stop: threading.Event, peak: list[int]) -> None:
    import psutil

    process = psutil.Process(pid)
    while not stop.is_set():
        try:
            rss = process.memory_info().rss + sum(
                c.memory_info().rss for c in process.children(recursive=True)
            )
        except psutil.Error:
            return
        peak[0] = max(peak[0], rss)
        time.sleep(0.05)


def run_load(domain: str, bundle: Path, clients: int, requests: int, batch: int, log: Path) -> dict[str, Any]:
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "common.cli", "serve", str(bundle), "--port", str(port)]
    command += ["--max_batch_size", str(batch), "--timeout", "120", "--max_queue", str(4 * clients)]
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"{domain}: server did not become ready; see {log}:\n{log.read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        spec = request_for(domain, bundle)
        path = spec.pop("path")
        with httpx.Client(timeout=180) as warm:
            warm.post(f"{url}{path}", **spec)  # first forward pass (allocations, lazy imports) not timed
        stop, peak = threading.Event(), [0]
        sampler = threading.Thread(target=peak_rss_sampler, args=(server.pid, stop, peak), daemon=True)
        sampler.start()

        generation: list[float] = []  # housebrain: the model's own time per design, without queueing

        def client(_: int) -> list[tuple[float, int]]:
            results = []
            with httpx.Client(timeout=180) as http:
                for _ in range(requests):
                    start = time.perf_counter()
                    try:
                        answer = http.post(f"{url}{path}", **spec)
                        status = answer.status_code
                        if status == 200 and path == "/v1/designs":
                            generation.append(answer.json()["generation_seconds"])
                    except httpx.HTTPError:
                        status = 0
                    results.append((time.perf_counter() - start, status))
            return results

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = [r for rs in pool.map(client, range(clients)) for r in rs]
        elapsed = time.perf_counter() - start
        batches = httpx.get(f"{url}/v1/model", timeout=10).json().get("batches_run", {})
        stop.set()
        sampler.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies = np.array([seconds for seconds, status in results if status == 200]) * 1000
    errors = sum(1 for _, status in results if status != 200)
    percentiles = np.percentile(latencies, [50, 95, 99]) if latencies.size else [float("nan")] * 3
    sizes = {int(k): v for k, v in batches.items()}
    mean_batch = sum(k * v for k, v in sizes.items()) / max(1, sum(sizes.values()))
    return {
        "domain": domain,
        "clients": clients,
        "max_batch_size": batch,
        "requests": len(results),
        "requests_per_s": len(results) / elapsed,
        "p50_ms": float(percentiles[0]),
        "p95_ms": float(percentiles[1]),
        "p99_ms": float(percentiles[2]),
        "errors": errors,
        "peak_rss_mb": peak[0] / 2**20,
        "mean_batch": mean_batch,
        "generation_s": float(np.mean(generation)) if generation else None,
    }


def tiny_bundle(domain: str, root: Path) -> Path:
    from tests.serving import bundles

    if domain == "housebrain":
        return bundles.housebrain_bundle(root / domain, root / "tiny-llama")
    return bundles.BUILDERS[domain](root / domain)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50, help="per client")
    parser.add_argument(
        "--housebrain_clients", type=int, default=1, help="designs are generated one at a time"
    )
    parser.add_argument("--housebrain_requests", type=int, default=4, help="per client (generation is slow)")
    parser.add_argument("--batch", type=int, default=16, help="max_batch_size of the batched runs")
    parser.add_argument("--domains", nargs="+", default=[*VISION, "housebrain"])
    parser.add_argument("--bundle", action="append", default=[], help="DOMAIN=PATH, instead of a tiny bundle")
    args = parser.parse_args()
    given = dict(item.split("=", 1) for item in args.bundle)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mtl-serving-bench-") as tmp:
        root = Path(tmp)
        for domain in args.domains:
            bundle = Path(given[domain]) if domain in given else tiny_bundle(domain, root)
            clients = args.clients if domain in VISION else args.housebrain_clients
            requests = args.requests if domain in VISION else args.housebrain_requests
            runs = [1, args.batch] if domain in VISION else [1]
            results = [
                run_load(domain, bundle, clients, requests, batch, root / f"{domain}-{batch}.log")
                for batch in runs
            ]
            for result in results:
                result["bundle"] = "given" if domain in given else "tiny"
                print(json.dumps(result), flush=True)
            if len(results) == 2:
                results[1]["speedup"] = results[1]["requests_per_s"] / results[0]["requests_per_s"]
            rows += results
    print()
    print(
        "| domain | clients | max_batch_size | requests | req/s | p50 ms | p95 ms | p99 ms | errors "
        "| peak RSS MB | mean batch | speed-up vs batch 1 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        speedup = f"{r['speedup']:.2f}x" if "speedup" in r else ""
        print(
            f"| {r['domain']} | {r['clients']} | {r['max_batch_size']} | {r['requests']} | {r['requests_per_s']:.1f} | "
            f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['errors']} | "
            f"{r['peak_rss_mb']:.0f} | {r['mean_batch']:.1f} | {speedup} |"
        )
    for r in rows:
        if r["generation_s"] is not None:
            print(f"{r['domain']}: {r['generation_s']:.2f} s of generation per design (mean)")
    print(f"machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
