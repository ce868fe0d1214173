"""Spike-activity profile of a network: what the cost model needs to know about the inputs.

Produced by ``snn.train.evaluate(..., profile=True)`` as plain JSON, consumed here. Keyed by the
prunable layer's name (the same names as the masks). Every rate describes the layer's *input*.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from accelerator.files import ConfigError, read_yaml, validation_error


class LayerProfile(BaseModel):
    """Activity of one layer's input, measured over evaluation samples."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    positions: int = Field(
        1, ge=1, description="Output positions per sample (H_out*W_out for conv, 1 for linear)."
    )
    timesteps: int = Field(1, ge=1, le=4096, description="Timesteps T per sample.")
    spike_rate: float = Field(
        1.0, ge=0, le=1, description="Fraction of (input neuron, timestep) entries that spike."
    )
    tick_zero_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Fraction of input neurons silent at all T timesteps: skipped by tick "
        "batching.",
    )
    channel_spike_rate: list[float] | None = Field(
        None, description="Spike rate per input channel (length C_in), optional."
    )
    channel_tick_zero_fraction: list[float] | None = Field(
        None, description="Tick-zero fraction per input channel (length C_in), optional."
    )
    output_size: tuple[int, int] | None = Field(
        None,
        description="Output map [H_out, W_out] (conv); H_out*W_out must equal positions. "
        "Default: the most square factorisation of positions.",
    )
    input_size: tuple[int, int] | None = Field(
        None,
        description="Input map [H_in, W_in] (conv). Default: output size x stride ('same' "
        "padding).",
    )
    stride: int = Field(1, ge=1, le=64, description="Convolution stride (1 for linear layers).")
    padding: int | None = Field(
        None, ge=0, le=64, description="Zero padding per side; default (kernel - 1) // 2 ('same')."
    )

    @model_validator(mode="after")
    def _geometry(self) -> LayerProfile:
        if self.output_size is not None and self.output_size[0] * self.output_size[1] != (
            self.positions
        ):
            raise ValueError(
                f"output_size {list(self.output_size)} has "
                f"{self.output_size[0] * self.output_size[1]} positions; positions is "
                f"{self.positions}"
            )
        if (self.output_size and min(self.output_size) < 1) or (
            self.input_size and min(self.input_size) < 1
        ):
            raise ValueError("output_size and input_size must be positive")
        return self


class Profile(BaseModel):
    """Per-layer activity of a whole network."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: dict[str, LayerProfile] = Field(description="Layer name -> activity of its input.")


NO_PROFILE = LayerProfile()
"""Used when no profile is given: one output position, one timestep, every input active;
geometry defaults: stride 1, 'same' padding, input positions = output positions."""


def parse_profile(data: dict[str, Any] | Profile, source: str | Path = "<profile>") -> Profile:
    """Validate a profile dict (as written by ``snn``); errors name ``source`` and the field."""
    if isinstance(data, Profile):
        return data
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise validation_error(source, exc) from None


def load_profile(path: str | Path) -> Profile:
    """Load a profile JSON/YAML file (JSON is YAML) with the project's safe reader."""
    return parse_profile(read_yaml(path, max_bytes=64 << 20), path)


def check_channels(profile: LayerProfile, name: str, channels: int, source: str) -> None:
    """Raise :class:`ConfigError` if per-channel lists do not match the layer's input channels."""
    for field in ("channel_spike_rate", "channel_tick_zero_fraction"):
        values = getattr(profile, field)
        if values is None:
            continue
        if len(values) != channels:
            raise ConfigError(
                source,
                f"layers.{name}.{field}",
                f"has {len(values)} entries; the layer has {channels} input channels",
            )
        if any(not (0.0 <= v <= 1.0) for v in values):
            raise ConfigError(source, f"layers.{name}.{field}", "values must lie in [0, 1]")
