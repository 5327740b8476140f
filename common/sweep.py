"""`mtl sweep`: hyperparameter search over any recipe with Optuna, shared by any number of processes.

    mtl sweep --config configs/landcover/quickstart.yaml --space sweep.yaml --trials 20
    mtl sweep --config configs/fwi/quickstart.yaml --space fwi_space.yaml --sampler grid \\
        --storage postgresql://user@db/optuna --trainer.max_epochs 5

The search space is a YAML mapping from recipe keys (what `mtl fit` takes as `--KEY VALUE`) to
Optuna distributions:

    model.init_args.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    model.init_args.width: {type: int, low: 8, high: 64, step: 8}
    model.init_args.optimizer: {type: categorical, choices: [adamw, sgd]}

Each trial is an ordinary `mtl fit` (in this process, so Lightning pruning from optuna-integration
can stop it early) into `<runs_dir>/<study>/trial_<NNN>/`, with its own curves, checkpoints and
export; `mtl runs status <runs_dir>/<study>` watches them. The study lives in an Optuna RDB storage
(default: SQLite in the sweep's directory; any SQLAlchemy URL for several machines or a SLURM job
array, see `scripts/slurm/sweep.sbatch`), so several `mtl sweep` processes with the same `--study`
and `--storage` share the work, and running the same command again after a kill continues the
study: the killed trial's heartbeat goes stale, Optuna marks it failed and enqueues it again
(`RetryHeartbeatStaleTrialCallback`), and the retry resumes the killed run from its `last.ckpt`.

When the study has `--trials` finished trials each process writes `summary.md`/`summary.json` (every
trial, best first) and `best.yaml`, the best trial's resolved config, usable as a recipe:
`mtl fit --config <runs_dir>/<study>/best.yaml`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import UserInputError
from common.run_files import is_local, open_location

PROG = "mtl sweep"
SPEC_FIELDS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}
FINISHED_STATES = ("COMPLETE", "PRUNED", "FAIL")


@dataclass(frozen=True)
class Parameter:
    """One searched recipe key and its Optuna distribution (validated)."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def distribution(self) -> Any:
        import optuna.distributions as d

        if self.kind == "float":
            return d.FloatDistribution(self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return d.IntDistribution(self.low, self.high, log=self.log, step=self.step or 1)
        return d.CategoricalDistribution(self.choices)

    def suggest(self, trial: Any) -> Any:
        """The trial's value for this key, through Optuna's `suggest_*`."""
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, log=self.log, step=self.step or 1)
        return trial.suggest_categorical(self.key, list(self.choices))

    def grid_values(self, source: str) -> list[Any]:
        """Every value of this parameter, for the grid sampler (a float needs a `step`)."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.step is None and self.kind == "float":
            raise UserInputError(
                f"{source}: {self.key}: the grid sampler needs a `step` (or `type: categorical` with "
                f"`choices`) for a float; found only low {self.low} and high {self.high}"
            )
        step = self.step or 1
        count = math.floor((self.high - self.low) / step + 1e-9) + 1
        values = [self.low + i * step for i in range(count)]
        return [int(v) for v in values] if self.kind == "int" else [round(v, 12) for v in values]

    def example_values(self) -> list[Any]:
        """Values that exercise the recipe parser: both ends of a range, every choice."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]


def parse_space(space: Any, source: str) -> list[Parameter]:
    """Validate a search space (the YAML mapping) and turn it into parameters; `source` names the file."""
    if not isinstance(space, dict) or not space:
        raise UserInputError(
            f"{source}: expected a mapping of recipe keys to distributions, e.g. "
            f"'model.init_args.lr: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}'; "
            f"found {type(space).__name__} {space!r}"[:300]
        )
    return [parse_parameter(str(key), spec, source) for key, spec in space.items()]


def parse_parameter(key: str, spec: Any, source: str) -> Parameter:
    where = f"{source}: {key}"
    if not isinstance(spec, dict) or "type" not in spec:
        raise UserInputError(
            f"{where}: expected a mapping with `type` (float, int or categorical); found {spec!r}"
        )
    kind = spec["type"]
    if kind not in SPEC_FIELDS:
        raise UserInputError(f"{where}: type {kind!r}: expected one of {sorted(SPEC_FIELDS)}")
    unknown = sorted(set(spec) - SPEC_FIELDS[kind])
    if unknown:
        raise UserInputError(
            f"{where}: unknown field(s) {unknown} for type {kind}; expected {sorted(SPEC_FIELDS[kind])}"
        )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UserInputError(f"{where}: `choices` must be a non-empty list; found {choices!r}")
        odd = [c for c in choices if c is not None and not isinstance(c, bool | int | float | str)]
        if odd:
            raise UserInputError(
                f"{where}: choices must be numbers, strings, booleans or null; found {odd!r}"
            )
        return Parameter(key, kind, choices=tuple(choices))
    number = float if kind == "float" else int
    bounds = {}
    for field in ("low", "high"):
        value = spec.get(field)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (kind == "int" and value != int(value))
        ):
            raise UserInputError(
                f"{where}: `{field}` must be {'a number' if kind == 'float' else 'an integer'}; found {value!r}"
            )
        bounds[field] = number(value)
    low, high = bounds["low"], bounds["high"]
    if not low < high:
        raise UserInputError(f"{where}: expected low < high; found low {low}, high {high}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise UserInputError(f"{where}: `log` must be true or false; found {log!r}")
    if log and low <= 0:
        raise UserInputError(f"{where}: a log scale needs low > 0; found low {low}")
    step = spec.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, int | float) or step <= 0:
            raise UserInputError(f"{where}: `step` must be a positive number; found {step!r}")
        if log:
            raise UserInputError(
                f"{where}: `step` and `log: true` cannot be combined (Optuna samples one or the other)"
            )
        step = number(step)
    return Parameter(key, kind, low=low, high=high, log=log, step=step)


def read_space(path: Path) -> list[Parameter]:
    """The search space file: YAML, validated."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: search space file not found")
    try:
        space = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserInputError(f"{path}: not valid YAML{where}: {getattr(error, 'problem', error)}") from None
    return parse_space(space, str(path))


def value_argument(value: Any) -> str:
    """A sampled value as `mtl fit` reads it on the command line."""
    return value if isinstance(value, str) else json.dumps(value)


def parameter_arguments(params: dict[str, Any]) -> list[str]:
    """`--KEY VALUE` for each sampled parameter."""
    arguments: list[str] = []
    for key, value in params.items():
        arguments += [f"--{key}", value_argument(value)]
    return arguments


def sweep_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        allow_abbrev=False,
        description="Optuna sweep over a recipe. Other arguments go to `mtl fit`'s parser "
        "(--config FILE, --trainer.max_epochs 5, ...) for every trial.",
    )
    parser.add_argument(
        "--space", type=Path, required=True, help="YAML search space: recipe key -> distribution."
    )
    parser.add_argument(
        "--trials", type=int, default=None, help="Finished trials wanted (default: 20; grid: its size)."
    )
    parser.add_argument(
        "--metric", default="val/loss", help="Logged metric the study optimises (its final value)."
    )
    parser.add_argument("--direction", choices=("minimize", "maximize"), default="minimize")
    parser.add_argument("--sampler", choices=("tpe", "grid"), default="tpe")
    parser.add_argument(
        "--pruner", choices=("median", "none"), default="median", help="Stop poor trials early."
    )
    parser.add_argument("--startup_trials", type=int, default=5, help="Trials before the median pruner acts.")
    parser.add_argument(
        "--study", default=None, help="Study name (default: <recipe name>/sweep); the trials' folder."
    )
    parser.add_argument(
        "--storage", default=None, help="Optuna RDB URL (default: sqlite in <runs_dir>/<study>/)."
    )
    parser.add_argument("--seed", type=int, default=None, help="Sampler seed.")
    parser.add_argument(
        "--heartbeat_s", type=int, default=60, help="Heartbeat period; a trial silent 2x longer is retried."
    )
    return parser


def sweep_command(argv: Sequence[str]) -> list[dict[str, Any]]:
    """`mtl sweep [sweep options] FIT_ARGUMENTS...`."""
    options, fit_arguments = sweep_parser().parse_known_args(list(argv))
    return sweep(fit_arguments, **vars(options))


def sweep(
    fit_arguments: Sequence[str],
    space: Path,
    trials: int | None = None,
    metric: str = "val/loss",
    direction: str = "minimize",
    sampler: str = "tpe",
    pruner: str = "median",
    startup_trials: int = 5,
    study: str | None = None,
    storage: str | None = None,
    seed: int | None = None,
    heartbeat_s: int = 60,
) -> list[dict[str, Any]]:
    """Run (or join, or continue) a study until it has `trials` finished trials; return the summary rows."""
    parameters = read_space(space)
    grid = {p.key: p.grid_values(str(space)) for p in parameters} if sampler == "grid" else None
    if trials is None:
        trials = math.prod(len(v) for v in grid.values()) if grid else 20
    if trials < 1:
        raise UserInputError(f"--trials {trials}: expected at least 1")
    base = parsed_fit_config(fit_arguments, parameters, str(space))
    study_name = study or (f"{base['name']}/sweep" if base["name"] else "sweep")
    filesystem, sweep_dir = open_location(f"{base['runs_dir'].rstrip('/')}/{study_name}")
    if storage is None:
        if not is_local(filesystem):
            raise UserInputError(
                f"--runs_dir {base['runs_dir']}: SQLite needs a local folder; give --storage "
                "(an RDB URL such as postgresql://user@host/db) for a sweep into remote storage"
            )
        Path(sweep_dir).mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{Path(sweep_dir).resolve() / 'study.db'}"
    optuna_study = open_study(study_name, storage, parameters, grid, metric, direction, sampler, pruner,
                              startup_trials, seed, heartbeat_s)  # fmt: skip
    objective = TrialObjective(
        fit_arguments, parameters, study_name, base["runs_dir"], metric, pruner != "none"
    )
    run_until_finished(optuna_study, objective, trials, heartbeat_s)
    rows = summary_rows(optuna_study, metric, base["runs_dir"], study_name)
    write_summary(filesystem, sweep_dir, rows, optuna_study, metric, direction, parameters)
    return rows


class _Parsed(Exception):
    """Raised by the parse-only CLI once the arguments parsed, carrying the config and the parser."""

    def __init__(self, config: Any, parser: Any) -> None:
        super().__init__("parsed")
        self.config = config
        self.parser = parser


def parsed_fit_config(
    fit_arguments: Sequence[str], parameters: list[Parameter], source: str
) -> dict[str, Any]:
    """Parse the trials' `mtl fit` arguments with every searched value, before any training.

    A searched key the recipe does not have, or a value its type refuses (a choice that is not one of a
    Literal's), fails here with the key named. Returns the base config's `name` and `runs_dir`.
    """
    from jsonargparse import ArgumentError

    from common.training_cli import MtlCLI

    class ParseOnlyCLI(MtlCLI):
        def init_parser(self, **kwargs: Any) -> Any:
            parser = super().init_parser(**kwargs)
            parser.exit_on_error = False
            return parser

        def before_instantiate_classes(self) -> None:
            raise _Parsed(self.config, self.parser)

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            ParseOnlyCLI(args=list(fit_arguments), run=False)
        raise AssertionError("the parse-only CLI did not stop after parsing")
    except _Parsed as parsed:
        config, parser = parsed.config, parsed.parser
    except ArgumentError as error:
        raise UserInputError(f"the trials' `mtl fit` arguments: {one_line(str(error))}") from None
    for parameter in parameters:
        for value in parameter.example_values():
            try:
                parser.parse_args([*fit_arguments, f"--{parameter.key}", value_argument(value)])
            except ArgumentError as error:
                raise UserInputError(
                    f"{source}: {parameter.key}: value {value!r} refused by the recipe: {one_line(str(error))}"
                ) from None
    return {"name": config.get("name"), "runs_dir": str(config.get("runs_dir"))}


def one_line(message: str, limit: int = 400) -> str:
    """jsonargparse's multi-line parse error as one line (the CLI prints errors as one line).

    Its message nests the reason inside the union of model classes; the lines that say what was
    refused ("Option 'x' is not accepted", 'Parser key "hidden": Expected a <class 'int'>. Got value:
    wide') are kept when there are any.
    """
    lines = [line.strip(" -") for line in message.strip().splitlines() if line.strip(" -")]
    telling = [
        line for line in lines
        if "not accepted" in line or "Got value" in line or ("Expected a" in line and "NoneType" not in line)
    ]  # fmt: skip
    text = "; ".join(telling) if telling else " ".join(lines)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def open_study(
    name: str,
    storage_url: str,
    parameters: list[Parameter],
    grid: dict[str, list[Any]] | None,
    metric: str,
    direction: str,
    sampler: str,
    pruner: str,
    startup_trials: int,
    seed: int | None,
    heartbeat_s: int,
) -> Any:
    """Create the study, or load it when another process (or an earlier run of this command) made it.

    The search space, metric and direction are stored with the study; joining it with different ones
    is refused, so trials of two different searches never mix in one table.
    """
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    engine = {"connect_args": {"timeout": 60}} if storage_url.startswith("sqlite") else {}
    for attempt in range(5):  # processes starting together race to create the tables
        try:
            with warnings.catch_warnings():  # Optuna calls heartbeats experimental; they are how retries work
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = RDBStorage(
                    storage_url,
                    engine_kwargs=engine,
                    heartbeat_interval=heartbeat_s,
                    grace_period=2 * heartbeat_s,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
                )
            break
        except Exception as error:  # sqlalchemy's OperationalError, or a bad URL
            racing = any(word in str(error) for word in ("locked", "exists", "UNIQUE constraint"))
            if attempt == 4 or not racing:
                raise UserInputError(
                    f"--storage {storage_url}: cannot open the Optuna storage: {error}"
                ) from None
            time.sleep(0.5 + attempt)
    chosen_sampler = (
        optuna.samplers.GridSampler(grid, seed=seed)
        if grid
        else optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    )
    chosen_pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=startup_trials)
        if pruner == "median"
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=chosen_sampler, pruner=chosen_pruner,
        direction=direction, load_if_exists=True,
    )  # fmt: skip
    described = {
        "space": {p.key: str(p.distribution()) for p in parameters},
        "metric": metric,
        "direction": direction,
        "sampler": sampler,
    }
    stored = study.user_attrs.get("sweep")
    if stored is None:
        study.set_user_attr("sweep", described)
    elif stored != described:
        differs = sorted(k for k in described if stored.get(k) != described[k])
        raise UserInputError(
            f"study {name!r} in {storage_url} was started with a different {', '.join(differs)}: "
            f"{ {k: stored.get(k) for k in differs} }; use another --study, or the same settings to continue it"
        )
    return study


def trial_origin(trial: Any) -> int:
    """The number of the first attempt of this trial (itself when it is not a retry).

    Recorded as the user attribute "origin" when a trial starts; Optuna's retry of a stale trial copies
    the user attributes, so the retry keeps its origin (and its run directory).
    """
    origin = trial.user_attrs.get("origin")
    if origin is None and hasattr(trial, "system_attrs"):
        origin = trial.system_attrs.get("failed_trial")
    return trial.number if origin is None else int(origin)


def study_progress(study: Any) -> dict[str, int]:
    """Counts of the study's trials by the state of their latest attempt (a retry replaces its origin)."""
    latest: dict[int, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        origin = trial_origin(trial)
        if origin not in latest or trial.number > latest[origin].number:
            latest[origin] = trial
    counts = {"finished": 0, "running": 0, "waiting": 0}
    for trial in latest.values():
        state = trial.state.name
        counts["finished" if state in FINISHED_STATES else state.lower()] += 1
    return counts


def run_until_finished(study: Any, objective: Any, trials: int, heartbeat_s: int) -> None:
    """Take trials from the study until `trials` of them finished, counting every process's work.

    A retry waiting in the queue is taken first; while the remaining trials all run elsewhere, wait for
    them (one of them may have been killed: once its heartbeat is stale it is enqueued again).
    """
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import fail_stale_trials

    while True:
        with warnings.catch_warnings():  # "experimental" in Optuna, and the way its heartbeat retries work
            warnings.simplefilter("ignore", ExperimentalWarning)
            fail_stale_trials(study)
        progress = study_progress(study)
        if progress["finished"] >= trials:
            return
        if progress["waiting"] or progress["finished"] + progress["running"] < trials:
            study.optimize(objective, n_trials=1, catch=(TrialFailed,), gc_after_trial=True)
        else:
            time.sleep(min(heartbeat_s, 5))


class TrialFailed(Exception):
    """A trial's training failed (not the user's input): the trial is marked failed, the sweep goes on."""


class TrialObjective:
    """One Optuna trial = one `mtl fit` run in this process, with Lightning pruning."""

    def __init__(
        self,
        fit_arguments: Sequence[str],
        parameters: list[Parameter],
        study_name: str,
        runs_dir: str,
        metric: str,
        pruning: bool,
    ) -> None:
        self.fit_arguments = list(fit_arguments)
        self.parameters = parameters
        self.study_name = study_name
        self.runs_dir = runs_dir
        self.metric = metric
        self.pruning = pruning

    def __call__(self, trial: Any) -> float:
        params = {p.key: p.suggest(trial) for p in self.parameters}
        origin = trial_origin(trial)
        trial.set_user_attr("origin", origin)
        name = f"{self.study_name}/trial_{origin:03d}"
        run_dir = f"{self.runs_dir.rstrip('/')}/{name}"
        trial.set_user_attr("run_dir", run_dir)
        arguments = ["fit", *self.fit_arguments, *parameter_arguments(params), "--name", name]
        if checkpoint_exists(f"{run_dir}/checkpoints/last.ckpt"):
            arguments += ["--ckpt_path", "last"]  # a retried trial continues its killed run
        else:
            keep_aside(run_dir, trial.number)  # killed before its first checkpoint: start clean, lose nothing
        shown = " ".join(f"{k}={v}" for k, v in params.items())
        print(f"== trial {trial.number}: {run_dir} {shown}", flush=True)
        value = self.train(trial, arguments, run_dir)
        print(f"== trial {trial.number}: {self.metric} = {value:.6g}", flush=True)
        return value

    def train(self, trial: Any, arguments: list[str], run_dir: str) -> float:
        import optuna
        from optuna_integration import PyTorchLightningPruningCallback

        from common.training_cli import MtlCLI

        pruning = PyTorchLightningPruningCallback(trial, monitor=self.metric) if self.pruning else None

        class TrialCLI(MtlCLI):
            def instantiate_trainer(self, **kwargs: Any) -> Any:
                trainer = super().instantiate_trainer(**kwargs)
                if pruning is not None:
                    trainer.callbacks.append(pruning)
                return trainer

        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
                cli = TrialCLI(args=arguments)
        except (optuna.TrialPruned, UserInputError):
            raise
        except SystemExit as stopped:  # the parser refused a value (checked before, so rare)
            raise TrialFailed(f"mtl fit exited with status {stopped.code}") from None
        except Exception as error:
            raise TrialFailed(f"{type(error).__name__}: {error}") from error
        logged = cli.trainer.callback_metrics.get(self.metric)
        value = float(logged) if logged is not None else last_logged_value(run_dir, self.metric)
        if value is None:
            raise UserInputError(
                f"--metric {self.metric}: the trial's run {run_dir} did not log it; "
                f"logged: {sorted(cli.trainer.callback_metrics)}"
            )
        if not math.isfinite(value):
            raise TrialFailed(f"{self.metric} is {value}")
        return value


def keep_aside(run_dir: str, attempt: int) -> None:
    """Move what a killed attempt left without a checkpoint to `<run_dir>.attempt<N>`, so the retry
    starts in an empty directory and the old files (its logs, say why it died) stay readable."""
    filesystem, inside = open_location(run_dir)
    if filesystem.exists(inside):
        filesystem.mv(inside, f"{inside}.attempt{attempt}", recursive=True)


def checkpoint_exists(path: str) -> bool:
    filesystem, inside = open_location(path)
    return filesystem.isfile(inside)


def last_logged_value(run_dir: str, metric: str) -> float | None:
    """The metric's last value in a run's event files (a resumed trial that had already finished)."""
    from common.run_files import read_scalars

    try:
        points = read_scalars(run_dir).get(metric)
    except UserInputError:
        return None
    return points[-1].value if points else None


def summary_rows(study: Any, metric: str, runs_dir: str, study_name: str) -> list[dict[str, Any]]:
    """One row per trial (latest attempt of each), completed best first, then pruned, then failed."""
    latest: dict[int, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        origin = trial_origin(trial)
        if origin not in latest or trial.number > latest[origin].number:
            latest[origin] = trial
    sign = 1 if study.direction.name == "MINIMIZE" else -1
    rows = []
    for origin, trial in latest.items():
        value = trial.value
        if value is None and trial.intermediate_values:
            value = trial.intermediate_values[max(trial.intermediate_values)]
        rows.append({
            "trial": origin,
            "state": trial.state.name.lower(),
            metric: value,
            **trial.params,
            "run_dir": trial.user_attrs.get("run_dir", f"{runs_dir.rstrip('/')}/{study_name}/trial_{origin:03d}"),
        })  # fmt: skip
    order = {"complete": 0, "pruned": 1, "running": 2, "waiting": 2, "fail": 3}
    return sorted(
        rows,
        key=lambda r: (
            order.get(r["state"], 4),
            math.inf if r[metric] is None else sign * r[metric],
            r["trial"],
        ),
    )


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(value: Any) -> str:
        return "" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_summary(
    filesystem: Any,
    sweep_dir: str,
    rows: list[dict[str, Any]],
    study: Any,
    metric: str,
    direction: str,
    parameters: list[Parameter],
) -> None:
    """summary.md, summary.json and best.yaml (the best trial's resolved config as a recipe)."""
    import yaml

    columns = ["trial", "state", metric, *(p.key for p in parameters), "run_dir"]
    table = markdown_table(rows, columns)
    filesystem.makedirs(sweep_dir, exist_ok=True)
    write_text(filesystem, f"{sweep_dir}/summary.md", table)
    write_text(filesystem, f"{sweep_dir}/summary.json", json.dumps(rows, indent=2) + "\n")
    print(table)
    best = next((row for row in rows if row["state"] == "complete"), None)
    if best is None:
        print("no trial completed: no best.yaml")
        return
    config_path = f"{best['run_dir']}/config.yaml"
    best_fs, inside = open_location(config_path)
    if not best_fs.isfile(inside):
        print(f"best trial {best['trial']}: {config_path} missing: no best.yaml")
        return
    config = yaml.safe_load(best_fs.cat_file(inside)) or {}
    config.pop("ckpt_path", None)
    config["name"] = f"{study.study_name}/best"
    header = (
        f"# Best trial {best['trial']} of sweep {study.study_name!r}: {metric} = {best[metric]:.6g} ({direction}).\n"
        f"# Searched: {', '.join(f'{p.key}={best.get(p.key)!r}' for p in parameters)}.\n"
        f"# Train it: mtl fit --config {sweep_dir}/best.yaml\n"
    )
    write_text(filesystem, f"{sweep_dir}/best.yaml", header + yaml.safe_dump(config, sort_keys=False))
    print(f"best: trial {best['trial']} ({metric} = {best[metric]:.6g}); recipe {sweep_dir}/best.yaml")


def write_text(filesystem: Any, path: str, text: str) -> None:
    """Write a whole file at once: locally through a temporary file and a rename, so no reader sees half."""
    if is_local(filesystem):
        temporary = Path(f"{path}.tmp-{time.time_ns()}")
        temporary.write_text(text)
        temporary.replace(path)
    else:
        filesystem.pipe_file(path, text.encode())
