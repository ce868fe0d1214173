"""Analytical model of a sparse spiking-neural-network accelerator (numpy only, no torch).

Describe hardware in YAML (:func:`load_accelerator`), map weights to PEs (:func:`pe_index`,
:func:`partition`), and score pruned masks (:func:`evaluate`): Eq. 2 utilization, latency,
energy (Eq. 3, the memory hierarchy) and area; score whole hardware grids at once
(:func:`evaluate_grid`). ``python -m accelerator`` is the CLI (``python -m accelerator.evaluate``
is the same command).
"""

from accelerator.config import (
    AcceleratorConfig,
    Dataflow,
    accelerator_fields,
    load_accelerator,
    parse_accelerator,
)
from accelerator.cost import ProfileMismatch, evaluate, plan_orders
from accelerator.counts import MaskSummary, summarize
from accelerator.files import ConfigError, read_yaml
from accelerator.grid import evaluate_grid, pareto_front
from accelerator.mapping import MappingError, Partition, partition, pe_index
from accelerator.order import LayerOrder, ordered_pe_index, workload_order
from accelerator.profile import LayerProfile, Profile, load_profile, parse_profile
from accelerator.report import LayerReport, Report
from accelerator.workload import MaskError, group_utilization

__all__ = [
    "AcceleratorConfig",
    "ConfigError",
    "Dataflow",
    "LayerOrder",
    "LayerProfile",
    "LayerReport",
    "MappingError",
    "MaskError",
    "MaskSummary",
    "Partition",
    "Profile",
    "ProfileMismatch",
    "Report",
    "accelerator_fields",
    "evaluate",
    "evaluate_grid",
    "group_utilization",
    "load_accelerator",
    "load_profile",
    "ordered_pe_index",
    "pareto_front",
    "parse_accelerator",
    "parse_profile",
    "partition",
    "pe_index",
    "plan_orders",
    "read_yaml",
    "summarize",
    "workload_order",
]
