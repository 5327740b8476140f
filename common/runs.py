"""`mtl runs status|compare`: watch and compare runs from their run directories, local or remote.

    mtl runs status runs/                                  # every run under runs/, one row each
    mtl runs status s3://bucket/runs gdrive-sync/ --watch 30
    mtl runs compare runs/landcover/sweep --metric val/macro_f1 --mode max

Everything comes from the files a run writes (see `common.training_cli`): `config.yaml` (the planned
steps or epochs, the batch size), the TensorBoard event files (step, epoch, metrics and the wall-clock
time of each logged point), `checkpoints/*.ckpt`, `memory.json` (MemoryProbe) and `export/`. So a
folder that collects runs synced from Colab, Kaggle, SageMaker and a cluster reads like a local one,
and a URL is read through fsspec (event files are cached locally, fetched again only when they grew).

State of a run:
- failed: a log file in the run directory (`*.log`, `*.out`, e.g. the SLURM log) ends in a Python
  traceback, or a checkpoint was saved because of an exception (a name with "exception" in it), and
  nothing newer was written since;
- finished: the export bundle was written after the last checkpoint, or the planned steps are reached;
- alive: the newest event file or checkpoint is younger than `--stall_after` seconds;
- stalled: none of these (killed, disconnected, or hung).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from common.errors import UserInputError
from common.run_files import (
    EVENT_FILE_PREFIX,
    FileEntry,
    ScalarPoint,
    is_local,
    list_files,
    open_location,
    read_scalars,
)

PROG = "mtl runs"
LOG_SUFFIXES = (".log", ".out", ".err")
STEP_IN_NAME = re.compile(r"step[=_-]?(\d+)")


@dataclass
class RunStatus:
    """What one run directory says about its run (None: not known from its files)."""

    run: str
    location: str
    state: str = "unknown"
    reason: str = ""
    step: int | None = None
    total_steps: int | None = None
    epoch: int | None = None
    max_epochs: int | None = None
    train_loss: float | None = None
    val_metric: str | None = None
    val_value: float | None = None
    steps_per_s: float | None = None
    samples_per_s: float | None = None
    eta_s: float | None = None
    last_write_age_s: float | None = None
    checkpoint_age_s: float | None = None
    best_checkpoint: str | None = None
    best_value: float | None = None
    peak_memory_gib: float | None = None
    last_values: dict[str, float] = field(default_factory=dict)


def find_run_directories(files: list[FileEntry]) -> list[str]:
    """Run directories among the files under a root (relative paths; "" is the root itself).

    A run directory holds event files, a `config.yaml` or `checkpoints/*.ckpt`; an export bundle's
    own `config.yaml` does not make `export/` a run.
    """
    found = set()
    for entry in files:
        parent, _, name = entry.relative.rpartition("/")
        if name.startswith(EVENT_FILE_PREFIX) or name == "config.yaml":
            if parent.rpartition("/")[2] != "export":
                found.add(parent)
        elif name.endswith(".ckpt") and parent.rpartition("/")[2] == "checkpoints":
            found.add(parent.rpartition("/")[0])
    return sorted(found)


def files_of(files: list[FileEntry], run: str) -> list[FileEntry]:
    """The files of one run directory (relative to it), without those of runs nested inside it."""
    prefix = f"{run}/" if run else ""
    return [
        FileEntry(e.relative[len(prefix) :], e.size, e.mtime) for e in files if e.relative.startswith(prefix)
    ]


def planned_training(config: dict[str, Any]) -> tuple[int | None, int | None, int | None]:
    """(max_steps, max_epochs, samples per optimizer step) from a run's resolved config.yaml."""
    trainer = config.get("trainer") or {}
    max_steps = trainer.get("max_steps")
    max_epochs = trainer.get("max_epochs")
    data = config.get("data") or {}
    arguments = data.get("init_args", data) if isinstance(data, dict) else {}
    batch_size = arguments.get("batch_size") if isinstance(arguments, dict) else None
    accumulate = trainer.get("accumulate_grad_batches") or 1
    per_step = (
        batch_size * accumulate if isinstance(batch_size, int) and isinstance(accumulate, int) else None
    )
    return (
        max_steps if isinstance(max_steps, int) and max_steps > 0 else None,
        max_epochs if isinstance(max_epochs, int) and max_epochs > 0 else None,
        per_step,
    )


def training_speed(points: list[ScalarPoint], window: int = 30) -> float | None:
    """Optimizer steps per second over the newest logged points of one invocation (a resume restarts it)."""
    recent = points[-window:]
    for start in range(len(recent) - 1, 0, -1):  # stop at a pause longer than a minute: another invocation
        if recent[start].wall_time - recent[start - 1].wall_time > 60:
            recent = recent[start:]
            break
    if len(recent) < 2 or recent[-1].wall_time <= recent[0].wall_time:
        return None
    return (recent[-1].step - recent[0].step) / (recent[-1].wall_time - recent[0].wall_time)


def steps_per_epoch(epochs: list[ScalarPoint]) -> int | None:
    """Optimizer steps in one epoch: the last step logged in epoch 0, plus one, once epoch 1 has begun.

    Lightning logs `epoch` beside every logged point; epoch-level metrics (validation, `*_epoch`) are
    logged at an epoch's last step, so the last step seen with epoch 0 is that epoch's end.
    """
    if not any(point.value >= 1 for point in epochs):
        return None
    return (
        max(point.step for point in epochs if point.value < 1) + 1
        if any(p.value < 1 for p in epochs)
        else None
    )


def failure_in_logs(filesystem: Any, root: str, files: list[FileEntry]) -> tuple[str, float] | None:
    """(last line, time) of a Python traceback in the last 20 kB of a log file in the run directory."""
    for entry in sorted(files, key=lambda e: -e.mtime):
        if "/" in entry.relative or not entry.relative.endswith(LOG_SUFFIXES):
            continue
        with filesystem.open(f"{root}/{entry.relative}", "rb") as handle:
            handle.seek(max(entry.size - 20_000, 0))
            tail = handle.read().decode("utf-8", errors="replace").splitlines()
        if any(line.startswith("Traceback (most recent call last)") for line in tail):
            last = next((line.strip() for line in reversed(tail) if line.strip()), "")
            return f"{entry.relative}: {last}"[:160], entry.mtime
    return None


def best_checkpoint(
    checkpoints: list[FileEntry], series: list[ScalarPoint] | None, mode: str, last_step: int | None
) -> tuple[str | None, float | None]:
    """(checkpoint, its metric) for one run: a `best*.ckpt` if the recipe saves one, else the numbered
    checkpoint whose step had the best logged value of the metric (the newest value at or before it)."""
    named_best = sorted(
        (c for c in checkpoints if c.relative.rpartition("/")[2].startswith("best")), key=lambda c: c.mtime
    )
    if named_best:
        return named_best[-1].relative, None
    if not series:
        return (checkpoints and max(checkpoints, key=lambda c: c.mtime).relative) or None, None
    scored = []
    for checkpoint in checkpoints:
        name = checkpoint.relative.rpartition("/")[2]
        match = STEP_IN_NAME.search(name)
        if not match and name != "last.ckpt":
            continue
        step = int(match.group(1)) if match else last_step
        before = [p for p in series if step is not None and p.step <= step]
        if before:
            scored.append((before[-1].value, checkpoint.relative))
    if not scored:
        return None, None
    value, path = (min if mode == "min" else max)(scored)
    return path, value


def run_status(
    filesystem: Any, root: str, run: str, files: list[FileEntry], metric: str | None, mode: str,
    stall_after: float, now: float,
) -> RunStatus:  # fmt: skip
    """Read one run directory into a RunStatus (no exception for a half-written or foreign run)."""
    import yaml

    location = f"{root}/{run}" if run else root
    # fsspec paths carry no protocol: `location` is for `filesystem`, `url` for the user and for readers
    # that open a location themselves (an s3:// run read as a local path would look empty).
    url = location if is_local(filesystem) else filesystem.unstrip_protocol(location)
    status = RunStatus(run=run or root.rpartition("/")[2], location=url)
    names = {e.relative: e for e in files}
    config: dict[str, Any] = {}
    if "config.yaml" in names:
        try:
            config = yaml.safe_load(filesystem.cat_file(f"{location}/config.yaml")) or {}
        except yaml.YAMLError:
            status.reason = "config.yaml is not valid YAML"
    max_steps, status.max_epochs, samples_per_step = planned_training(config)
    events = [e for e in files if "/" not in e.relative and e.relative.startswith(EVENT_FILE_PREFIX)]
    checkpoints = [
        e for e in files if e.relative.endswith(".ckpt") and not e.relative.rpartition("/")[2].startswith(".")
    ]
    scalars: dict[str, list[ScalarPoint]] = {}
    if events:
        try:
            scalars = read_scalars(url)
        except Exception as error:  # a truncated event file being written: report, do not stop
            status.reason = f"event files unreadable: {error}"[:160]
    points = [p for series in scalars.values() for p in series]
    # Steps done: Lightning logs a step's values under its 0-based index.
    status.step = max((p.step + 1 for p in points), default=None)
    if "epoch" in scalars:
        status.epoch = int(scalars["epoch"][-1].value)
    status.last_values = {
        tag: series[-1].value
        for tag, series in scalars.items()
        if tag.split("/")[0] in ("train", "val", "test")
    }
    status.train_loss = status.last_values.get("train/loss", status.last_values.get("train/loss_epoch"))
    val_tags = sorted(t for t in status.last_values if t.startswith("val/"))
    status.val_metric = (
        metric
        if metric in status.last_values
        else ("val/loss" if "val/loss" in val_tags else (val_tags or [None])[0])
    )
    if status.val_metric:
        status.val_value = status.last_values[status.val_metric]
    train_series = scalars.get("train/loss") or max(
        (s for t, s in scalars.items() if t.startswith("train/")), key=len, default=[]
    )
    status.steps_per_s = training_speed(train_series)
    if status.steps_per_s is not None and samples_per_step:
        status.samples_per_s = status.steps_per_s * samples_per_step
    per_epoch = steps_per_epoch(scalars.get("epoch", []))
    status.total_steps = max_steps or (
        status.max_epochs * per_epoch if status.max_epochs and per_epoch else None
    )

    newest_event = max((e.mtime for e in events), default=None)
    newest_checkpoint = max((c.mtime for c in checkpoints), default=None)
    newest = max((t for t in (newest_event, newest_checkpoint) if t is not None), default=None)
    status.last_write_age_s = None if newest is None else max(now - newest, 0.0)
    status.checkpoint_age_s = None if newest_checkpoint is None else max(now - newest_checkpoint, 0.0)
    series = scalars.get(status.val_metric) if status.val_metric else None
    status.best_checkpoint, status.best_value = best_checkpoint(checkpoints, series, mode, status.step)
    if "memory.json" in names:
        try:
            peak = json.loads(filesystem.cat_file(f"{location}/memory.json")).get("peak", {})
            status.peak_memory_gib = (
                max(peak.get("cuda_reserved_peak_gib") or 0, peak.get("tree_rss_gib") or 0) or None
            )
        except (ValueError, AttributeError):
            pass

    failure = failure_in_logs(filesystem, location, files)
    exception_checkpoints = [c for c in checkpoints if "exception" in c.relative.rpartition("/")[2]]
    if failure is None and exception_checkpoints:
        newest_exception = max(exception_checkpoints, key=lambda c: c.mtime)
        failure = (f"checkpoint saved on an exception: {newest_exception.relative}", newest_exception.mtime)
    export_marker = names.get("export/bundle.json") or names.get("export/metrics.json")
    reached = (
        status.step is not None and status.total_steps is not None and status.step + 1 >= status.total_steps
    )
    if failure is not None and (newest is None or failure[1] + 1 >= newest):
        status.state, status.reason = "failed", failure[0]
    elif (
        export_marker and (newest_checkpoint is None or export_marker.mtime + 1 >= newest_checkpoint)
    ) or reached:
        status.state = "finished"
    elif newest is not None and now - newest < stall_after:
        status.state = "alive"
    else:
        status.state = "stalled"
        status.reason = status.reason or (
            f"nothing written for {format_age(status.last_write_age_s)}"
            if newest
            else "no event file or checkpoint yet"
        )
    if status.state == "alive" and status.steps_per_s and status.total_steps and status.step is not None:
        status.eta_s = max(status.total_steps - status.step, 0) / status.steps_per_s
    return status


def collect(locations: Sequence[str], metric: str | None, mode: str, stall_after: float) -> list[RunStatus]:
    """A RunStatus for every run directory under each location (itself a run, or a folder of runs)."""
    statuses = []
    now = time.time()
    for location in locations:
        filesystem, root = open_location(location)
        if not filesystem.exists(root):
            raise UserInputError(f"{location}: no such run directory or folder of runs")
        files = list_files(filesystem, root)
        runs = find_run_directories(files)
        if not runs:
            raise UserInputError(
                f"{location}: no run directory here (no config.yaml, event file or checkpoints/)"
            )
        for run in runs:
            statuses.append(
                run_status(filesystem, root, run, files_of(files, run), metric, mode, stall_after, now)
            )
    return statuses


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d"


def format_number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def status_rows(statuses: list[RunStatus]) -> tuple[list[str], list[list[str]]]:
    """The status table: header and one row of text per run."""
    header = ["run", "state", "step", "epoch", "train/loss", "val", "samples/s", "ETA", "last write", "checkpoint", "best checkpoint", "note"]  # fmt: skip
    rows = []
    for s in statuses:
        progress = (
            ""
            if s.step is None
            else f"{s.step}"
            + (f"/{s.total_steps} ({100 * s.step / s.total_steps:.0f}%)" if s.total_steps else "")
        )
        epoch = "" if s.epoch is None else f"{s.epoch}" + (f"/{s.max_epochs}" if s.max_epochs else "")
        speed = (
            format_number(s.samples_per_s)
            if s.samples_per_s
            else (f"{format_number(s.steps_per_s)} steps/s" if s.steps_per_s else "")
        )
        rows.append([
            s.run, s.state, progress, epoch, format_number(s.train_loss),
            f"{s.val_metric} {format_number(s.val_value)}" if s.val_metric else "",
            speed, format_age(s.eta_s), format_age(s.last_write_age_s), format_age(s.checkpoint_age_s),
            (s.best_checkpoint or "").rpartition("/")[2], s.reason,
        ])  # fmt: skip
    return header, rows


def compare_rows(statuses: list[RunStatus], metric: str | None) -> tuple[list[str], list[list[str]]]:
    """Metrics side by side: one column per run, one row per logged train/val/test metric."""
    header = ["metric", *(s.run for s in statuses)]
    tags = sorted(
        {t for s in statuses for t in s.last_values},
        key=lambda t: (("train", "val", "test").index(t.split("/")[0]), t),
    )
    rows = [
        ["state", *(s.state for s in statuses)],
        ["step", *("" if s.step is None else str(s.step) for s in statuses)],
    ]
    rows += [[tag, *(format_number(s.last_values.get(tag)) for s in statuses)] for tag in tags]
    rows.append([f"best checkpoint ({metric or 'val'})", *(s.best_checkpoint or "" for s in statuses)])
    rows.append(["best value", *(format_number(s.best_value) for s in statuses)])
    return header, rows


def render(title: str, header: list[str], rows: list[list[str]]) -> Any:
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for name in header:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def runs_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, allow_abbrev=False, description="Watch and compare runs from their run directories."
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    for verb, text in (
        ("status", "one row per run: progress, metrics, speed, ETA, state"),
        ("compare", "metrics side by side, best checkpoint per run"),
    ):
        sub = verbs.add_parser(verb, help=text, allow_abbrev=False)
        sub.add_argument(
            "locations", nargs="+", help="run directories or folders of runs: paths or fsspec URLs"
        )
        sub.add_argument(
            "--metric",
            default=None,
            help="validation metric to show and rank checkpoints by (default val/loss)",
        )
        sub.add_argument(
            "--mode", choices=("min", "max"), default="min", help="whether a lower or higher metric is better"
        )
        sub.add_argument(
            "--stall_after",
            type=float,
            default=900,
            help="seconds without a write before a run counts as stalled",
        )
        sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
        if verb == "status":
            sub.add_argument("--watch", type=float, default=0, help="refresh every N seconds (Ctrl-C stops)")
            sub.add_argument(
                "--refreshes", type=int, default=0, help="with --watch: stop after N tables (0: never)"
            )
    return parser


def runs_command(argv: Sequence[str]) -> list[RunStatus]:
    """`mtl runs status|compare LOCATION... [options]`."""
    options = runs_parser().parse_args(list(argv))
    if options.verb == "status" and options.watch > 0:
        return watch(options)
    statuses = collect(options.locations, options.metric, options.mode, options.stall_after)
    show(options, statuses)
    return statuses


def show(options: argparse.Namespace, statuses: list[RunStatus]) -> None:
    from rich.console import Console

    if options.json:
        print(json.dumps([asdict(s) for s in statuses], indent=2))
        return
    rows = status_rows(statuses) if options.verb == "status" else compare_rows(statuses, options.metric)
    Console(width=max(160, Console().width)).print(
        render(f"mtl runs {options.verb}: {' '.join(options.locations)}", *rows)
    )


def watch(options: argparse.Namespace) -> list[RunStatus]:
    """Redraw the status table every `--watch` seconds, in place on a terminal."""
    from rich.console import Console
    from rich.live import Live

    console = Console(width=max(160, Console().width))
    statuses = collect(options.locations, options.metric, options.mode, options.stall_after)
    shown = 1
    title = f"mtl runs status: {' '.join(options.locations)} (every {options.watch:g} s; Ctrl-C stops)"
    with Live(render(title, *status_rows(statuses)), console=console, auto_refresh=False) as live:
        try:
            while not options.refreshes or shown < options.refreshes:
                time.sleep(options.watch)
                statuses = collect(options.locations, options.metric, options.mode, options.stall_after)
                live.update(render(title, *status_rows(statuses)), refresh=True)
                shown += 1
        except KeyboardInterrupt:
            pass
    return statuses
