"""Search spaces: a YAML file that names the study, the base hardware, the network and its
training, the pruning schedule, the parameters to sweep, the objectives and the sampler.

Every section is validated by Pydantic; errors name the file, the field and what is allowed.
A *parameter* addresses any field of the design point by a dotted path
(``accelerator.pe_array.rows``, ``accelerator.dataflow``, ``pruning.balance``, ``train.lr`` ...)
and gives its Optuna distribution.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from accelerator import AcceleratorConfig, ConfigError, parse_accelerator, read_yaml
from accelerator.files import validation_error
from dse.metrics import METRICS
from snn.models import ModelConfig
from snn.ticket import TicketConfig
from snn.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPACE = ROOT / "search_spaces" / "default.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSpec(_Strict):
    """Which dataset and how it is split (deterministic for the top-level seed)."""

    name: str = Field("digits", description="digits | mnist5k | cifar10 | fmnist | svhn.")
    root: str | None = Field(None, description="Folder of real datasets (torchvision format).")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="Validation share of the train set.")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Test share (embedded sets only).")
    cutout: int = Field(0, ge=0, le=32, description="Cutout pixels for cifar10 (paper: 16).")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from snn.data import DATASETS

        if v not in DATASETS:
            raise ValueError(f"unknown dataset {v!r}; allowed: {', '.join(DATASETS)}")
        return v


class IntParam(_Strict):
    """An integer parameter: ``low..high`` (inclusive), optional ``step`` or ``log`` scale."""

    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        _check_range(self.low, self.high, self.log, self.step != 1)
        return self


class FloatParam(_Strict):
    """A float parameter: ``[low, high]``, optional ``step`` or ``log`` scale."""

    type: Literal["float"]
    low: float
    high: float
    step: float | None = Field(None, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        _check_range(self.low, self.high, self.log, self.step is not None)
        return self


class CategoricalParam(_Strict):
    """A categorical parameter over a list of values."""

    type: Literal["categorical"]
    choices: list[str | int | float | bool | None] = Field(min_length=1)


def _check_range(low: float, high: float, log: bool, stepped: bool) -> None:
    if low > high:
        raise ValueError(f"low ({low}) must not exceed high ({high})")
    if log and low <= 0:
        raise ValueError(f"a log range needs low > 0 (got low={low}): it cannot cross zero")
    if log and stepped:
        raise ValueError("step and log cannot be combined")


Param = Annotated[IntParam | FloatParam | CategoricalParam, Field(discriminator="type")]


class Objective(_Strict):
    """One objective of the study."""

    metric: str = Field(description=f"One of: {', '.join(METRICS)}.")
    direction: Literal["maximize", "minimize"]

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(f"unknown metric {v!r}; allowed: {', '.join(METRICS)}")
        return v


class Constraint(_Strict):
    """A feasibility bound on a metric, passed to the sampler as an Optuna constraint."""

    metric: str = Field(description=f"One of: {', '.join(METRICS)}.")
    max: float | None = None
    min: float | None = None

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        return Objective._metric(v)

    @model_validator(mode="after")
    def _bound(self) -> Constraint:
        if (self.max is None) == (self.min is None):
            raise ValueError("give exactly one of max or min")
        return self


class SamplerSpec(_Strict):
    """Optuna sampler and its options."""

    name: Literal["nsga2", "nsga3", "tpe", "random", "qmc", "gp", "ticket", "exhaustive"] = Field(
        "tpe",
        description="tpe (default: multivariate TPE with constant liar, the best hypervolume "
        "per trial in benchmarks/bench_samplers.py), nsga2, nsga3, random, qmc, gp, ticket "
        "(ticket-centric: train the ticket whose predicted points add the most hypervolume, "
        "dse.ticket_sampler; needs derive: true), or exhaustive (exact mode: every point of a "
        "finite space, each ticket trained once).",
    )
    seed: int | None = Field(
        None,
        ge=0,
        le=2**31 - 1,
        description="Seed of the sampler alone (default: the space's seed). Another value "
        "gives other proposals on the same tickets and the same exact front.",
    )
    population_size: int | None = Field(
        None, ge=2, description="NSGA-II/III population per generation."
    )
    n_startup_trials: int | None = Field(None, ge=0, description="TPE/GP random start-up trials.")
    derive: bool = Field(
        True,
        description="Ticket-centric search: a trained ticket scores every design point of the "
        "space it serves, and its non-dominated points join the study as derived trials "
        "(dse.tickets). false: one design point per trial, a plain Optuna study.",
    )

    @model_validator(mode="after")
    def _ticket_needs_derive(self) -> SamplerSpec:
        if self.name == "ticket" and not self.derive:
            raise ValueError("name 'ticket' chooses tickets to train: it needs derive: true")
        return self

    def seed_of(self, space_seed: int) -> int:
        """The sampler's seed: ``seed`` when given, else the space's."""
        return self.seed if self.seed is not None else space_seed


def _default_objectives() -> list[Objective]:
    return [
        Objective(metric="val_accuracy", direction="maximize"),
        Objective(metric="latency", direction="minimize"),
        Objective(metric="energy", direction="minimize"),
    ]


class Space(_Strict):
    """A whole search space (see search_spaces/default.yaml for a commented example)."""

    study: str = Field("dse", min_length=1, max_length=120, description="Optuna study name.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed of data split, init, pruning.")
    accelerator: dict[str, Any] = Field(
        default_factory=dict,
        description="`base`: an accelerator YAML (relative to this file); any other key "
        "overrides that config's fields.",
    )
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    pruning: TicketConfig = Field(default_factory=TicketConfig)
    params: dict[str, Param] = Field(default_factory=dict, description="Dotted path -> spec.")
    objectives: list[Objective] = Field(default_factory=_default_objectives, min_length=1)
    constraints: list[Constraint] = Field(default_factory=list)
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    n_trials: int = Field(24, ge=1, le=1_000_000, description="Trial budget (complete trials).")
    timeout: float | None = Field(None, gt=0, description="Wall-clock budget in seconds.")

    @field_validator("pruning", mode="before")
    @classmethod
    def _no_pruning_seed(cls, v: Any) -> Any:
        if isinstance(v, dict) and "seed" in v:
            raise ValueError("set the top-level `seed`; it seeds pruning too")
        return v


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from the command line; VALUE is read as YAML (numbers, booleans, lists)."""
    if "=" not in text:
        raise ValueError(f"--set expects KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ValueError(f"--set expects KEY=VALUE, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def unknown_key_error(
    path: str | Path, exc: ValidationError, root: type[BaseModel], prefix: str = ""
) -> ConfigError:
    """:func:`validation_error`, but an unknown key also gets a "did you mean" from the
    fields allowed where it stands (``train.epoch`` -> ``epochs``)."""
    first = exc.errors(include_url=False)[0]
    if first["type"] == "extra_forbidden":
        loc = [str(p) for p in first["loc"]]
        model: type[BaseModel] = root
        for part in loc[:-1]:
            field = model.model_fields.get(part)
            ann = field.annotation if field is not None else None
            if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
                break
            model = ann
        else:
            known = list(model.model_fields)
            close = difflib.get_close_matches(loc[-1], known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            field_name = ".".join([*([prefix] if prefix else []), *loc])
            return ConfigError(path, field_name, f"unknown key; {hint}allowed: {', '.join(known)}")
    return validation_error(path, exc, prefix=prefix)


def load_space(path: str | Path = DEFAULT_SPACE, overrides: list[str] | None = None) -> LoadedSpace:
    """Read, override (``KEY=VALUE`` strings) and validate a search-space file."""
    p = Path(path)
    data = read_yaml(p)
    for text in overrides or []:
        try:
            key, value = parse_override(text)
        except ValueError as exc:
            raise ConfigError("--set", text, str(exc)) from None
        _set_dotted(data, key, value)
    try:
        space = Space.model_validate(data)
    except ValidationError as exc:
        raise unknown_key_error(p, exc, Space) from None
    loaded = LoadedSpace(space, p)
    loaded.base_accelerator()  # validates the accelerator section now, not in a worker
    loaded.check_params()
    return loaded


class LoadedSpace:
    """A validated :class:`Space` with the file it came from (for relative paths and errors)."""

    def __init__(self, space: Space, path: Path) -> None:
        self.space = space
        self.path = path

    def base_accelerator(self) -> AcceleratorConfig:
        """The accelerator of the space: its ``base`` YAML merged with inline overrides."""
        section = dict(self.space.accelerator)
        base = section.pop("base", None)
        data: dict[str, Any] = {}
        source: str | Path = self.path
        if base is not None:
            candidates = [self.path.parent / str(base), ROOT / str(base), Path(str(base))]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise ConfigError(self.path, "accelerator.base", f"file not found: {base}")
            data = read_yaml(found)
            parse_accelerator(data, found)  # the base file itself must be valid
        try:
            return AcceleratorConfig.model_validate(_merge(data, section))
        except ValidationError as exc:
            raise unknown_key_error(source, exc, AcceleratorConfig, "accelerator") from None

    def check_params(self) -> None:
        """Every parameter must address a real field and accept its distribution's values."""
        from dse.design import DesignPoint

        for name, spec in self.space.params.items():
            samples: list[Any]
            if isinstance(spec, CategoricalParam):
                samples = list(spec.choices)
            else:
                samples = [spec.low, spec.high]
            for value in samples:
                try:
                    DesignPoint.build(self, {name: value})
                except ConfigError as exc:
                    raise ConfigError(self.path, f"params.{name}", exc.message) from None
