"""Safe reading of YAML/JSON configuration files, with errors that name the file and the field.

Every configuration file of the project (accelerator YAML, search spaces, profiles) goes through
:func:`read_yaml` so that the same protections apply everywhere: a size limit, PyYAML's safe
loader (no object construction, nothing executed), no aliases (a "billion laughs" YAML bomb is
rejected before it expands) and a mapping at the top level.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

MAX_CONFIG_BYTES = 1 << 20
"""Largest configuration file accepted (1 MiB): real configs are a few KiB."""


class ConfigError(ValueError):
    """A configuration or input file is unusable; the message names the file and the field.

    ``str(error)`` is one line: ``"<file>: <field>: <what is wrong and what is allowed>"``.
    """

    def __init__(self, path: str | Path, field: str, message: str) -> None:
        self.path = str(path)
        self.field = field
        self.message = message
        where = f"{self.path}: {field}" if field else self.path
        super().__init__(f"{where}: {message}")


class _NoAliasLoader(yaml.SafeLoader):
    """Safe loader that refuses anchors/aliases (they enable exponential 'YAML bombs')."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.constructor.ConstructorError(
                None, None, "aliases (*name) are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)


def read_yaml(path: str | Path, *, max_bytes: int = MAX_CONFIG_BYTES) -> dict[str, Any]:
    """Read a YAML (or JSON) file into a dict, or raise :class:`ConfigError` naming the file."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(p, "", "file not found")
    if not p.is_file():
        raise ConfigError(p, "", "not a regular file")
    size = p.stat().st_size
    if size > max_bytes:
        raise ConfigError(p, "", f"file is {size} bytes; at most {max_bytes} bytes are allowed")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(p, "", "not UTF-8 text (expected a YAML file)") from None
    except OSError as exc:
        raise ConfigError(p, "", f"cannot read: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(p, "", f"not valid YAML{where}: {problem}") from None
    if data is None:
        raise ConfigError(p, "", "file is empty; expected a mapping of settings")
    if not isinstance(data, dict):
        raise ConfigError(p, "", f"expected a mapping at the top level, got {type(data).__name__}")
    return data


def set_existing(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set the field at ``dotted`` (e.g. ``"pe_array.rows"``) of nested dicts in place; raises
    ``KeyError(dotted)`` unless every part of the path already exists."""
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise KeyError(dotted)
        node = node[part]
    if parts[-1] not in node:
        raise KeyError(dotted)
    node[parts[-1]] = value


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_error(path: str | Path, exc: ValidationError, prefix: str = "") -> ConfigError:
    """Turn a Pydantic error into one-line :class:`ConfigError` naming field and allowed values."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    field = _loc([*([prefix] if prefix else []), *first["loc"]])
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key (not allowed here; check the spelling against the documented fields)"
    elif "input" in first and first["type"] not in ("missing",):
        shown = repr(first["input"])
        msg = f"{msg} (got {shown[:60]}{'...' if len(shown) > 60 else ''})"
    more = f" [and {len(errors) - 1} more error(s)]" if len(errors) > 1 else ""
    return ConfigError(path, field or "<root>", msg + more)
