"""A design point: one accelerator x mapping x pruning schedule x network/training setting.

Built from a search space plus parameter assignments (dotted paths), fully validated, and
serializable to a plain dict that is stored with every trial so the trial can be re-run.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from accelerator import AcceleratorConfig, ConfigError
from accelerator.files import set_existing
from snn.models import ModelConfig
from snn.ticket import TicketConfig
from snn.train import TrainConfig

if TYPE_CHECKING:
    from dse.space import DataSpec, LoadedSpace

SECTIONS = ("accelerator", "data", "model", "train", "pruning", "seed")


def base_sections(loaded: LoadedSpace) -> dict[str, Any]:
    """The space's base settings as plain sections (what parameters are applied to)."""
    space = loaded.space
    return {
        "accelerator": loaded.base_accelerator().model_dump(mode="json"),
        "data": space.data.model_dump(mode="json"),
        "model": space.model.model_dump(mode="json"),
        "train": space.train.model_dump(mode="json"),
        "pruning": space.pruning.model_dump(mode="json"),
        "seed": space.seed,
    }


def _closest(head: str, section: dict[str, Any], dotted: str) -> str:
    """A "did you mean" hint for a dotted path that misses a field of ``section``."""
    node: Any = section
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            return ""
        if part not in node:
            close = difflib.get_close_matches(part, list(node), n=1)
            return f"; did you mean '{'.'.join([head, *parts[:i], close[0]])}'?" if close else ""
        node = node[part]
    return ""


@dataclass(frozen=True)
class DesignPoint:
    """Everything one trial needs: hardware, data, network, training, pruning and the seed."""

    accelerator: AcceleratorConfig
    data: DataSpec
    model: ModelConfig
    train: TrainConfig
    pruning: TicketConfig
    seed: int

    @classmethod
    def build(cls, loaded: LoadedSpace, assignments: dict[str, Any]) -> DesignPoint:
        """Apply ``{"accelerator.pe_array.rows": 8, "pruning.balance": "uticket", ...}`` to the
        space's base settings; raises :class:`ConfigError` naming the bad key."""

        return cls.apply(base_sections(loaded), assignments)

    @classmethod
    def apply(cls, base: dict[str, Any], assignments: dict[str, Any]) -> DesignPoint:
        """:meth:`build` from precomputed :func:`base_sections` (enumerating a grid builds
        thousands of points: the base accelerator YAML is then read once)."""
        sections = copy.deepcopy(base)
        for key, value in assignments.items():
            head, _, rest = key.partition(".")
            if head not in SECTIONS or (head == "seed") != (rest == ""):
                raise ConfigError(
                    "<params>", key, f"addresses nothing; paths start with one of {SECTIONS}"
                )
            if head == "seed":
                sections["seed"] = value
                continue
            try:
                set_existing(sections[head], rest, value)
            except KeyError:
                message = "addresses no field of the design point" + _closest(
                    head, sections[head], rest
                )
                raise ConfigError("<params>", key, message) from None
        return cls.from_dict(sections)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DesignPoint:
        """Rebuild from :meth:`to_dict` (e.g. a stored trial); errors name the field."""
        from dse.space import DataSpec

        seed = int(data.get("seed", 0))
        pruning = {**data.get("pruning", {}), "seed": seed}
        try:
            return cls(
                accelerator=AcceleratorConfig.model_validate(data.get("accelerator", {})),
                data=DataSpec.model_validate(data.get("data", {})),
                model=ModelConfig.model_validate(data.get("model", {})),
                train=TrainConfig.model_validate(data.get("train", {})),
                pruning=TicketConfig.model_validate(pruning),
                seed=seed,
            )
        except ValidationError as exc:
            title = exc.title.lower()
            section = {
                "acceleratorconfig": "accelerator",
                "dataspec": "data",
                "modelconfig": "model",
                "trainconfig": "train",
                "ticketconfig": "pruning",
            }.get(title, title)
            err = exc.errors(include_url=False)[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise ConfigError("<design point>", f"{section}.{loc}", err["msg"]) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; ``DesignPoint.from_dict(p.to_dict()) == p``."""
        pruning = self.pruning.model_dump(mode="json")
        pruning.pop("seed", None)
        return {
            "accelerator": self.accelerator.model_dump(mode="json"),
            "data": self.data.model_dump(mode="json"),
            "model": self.model.model_dump(mode="json"),
            "train": self.train.model_dump(mode="json"),
            "pruning": pruning,
            "seed": self.seed,
        }

    def attrs(self) -> dict[str, Any]:
        """The point as trial user attributes: the whole point (re-runnable with
        :meth:`from_dict`) and the columns tables and plots group by."""
        a = self.accelerator
        return {
            "design_point": self.to_dict(),
            "dataflow": a.dataflow.value,
            "balance": self.pruning.balance,
            "n_pe": a.n_pe,
            "pe_rows": a.pe_array.rows,
            "pe_cols": a.pe_array.cols,
            "rounds": self.pruning.rounds,
        }

    def flat(self) -> dict[str, Any]:
        """Dotted-path view of :meth:`to_dict` (what dashboards and CSV files show)."""
        out: dict[str, Any] = {}

        def walk(prefix: str, node: Any) -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            else:
                out[prefix] = node

        walk("", self.to_dict())
        return out
