"""Destination plugins, chosen by ``destination.type`` in lakeseg.yml.

Adding a destination means one module implementing ``base.Destination`` (a
job platform subclasses ``platform.JobDestination``, which delivers through
``jobs.deliver_in_jobs`` and calls AWS as ``aws_calls`` says, and supplies
``run_job`` and its own steps) and one line here.

Imports only ``sync.core``: a destination knows nothing of dbt, the diff or the state store.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sync.core.errors import ConfigError
from sync.destinations.base import DeliveryResult, Destination, JobRecord, SegmentDelivery

REGISTRY = {
    "files": "sync.destinations.files:FilesDestination",
    "pinpoint": "sync.destinations.pinpoint:PinpointDestination",
    "customer_profiles": "sync.destinations.customer_profiles:CustomerProfilesDestination",
}


def build_destination(settings: Any, session=None) -> Destination:
    """The destination a ``destination:`` block names: its settings model (from lakeseg.yml) or a mapping."""
    kind = settings.get("type") if isinstance(settings, Mapping) else settings.type
    if kind not in REGISTRY:
        raise ConfigError(f"destination.type '{kind}' is unknown; choose one of: {', '.join(sorted(REGISTRY))}")
    module, _, cls = REGISTRY[kind].partition(":")
    return getattr(importlib.import_module(module), cls).from_settings(settings, session)


if TYPE_CHECKING:  # mypy checks that every registered destination declares all of base.Destination
    from sync.destinations.customer_profiles import CustomerProfilesDestination
    from sync.destinations.files import FilesDestination
    from sync.destinations.pinpoint import PinpointDestination

    _files: type[Destination] = FilesDestination
    _pinpoint: type[Destination] = PinpointDestination
    _customer_profiles: type[Destination] = CustomerProfilesDestination


def state_key(destination: Destination, settings: Any) -> str:
    """The name the state store keeps this destination's snapshots under: ``destination.name`` (the
    ``destination:`` block's), else the destination's own name (its type)."""
    name = settings.get("name") if isinstance(settings, Mapping) else settings.name
    return str(name or destination.name)


__all__ = ["DeliveryResult", "Destination", "JobRecord", "SegmentDelivery", "build_destination", "state_key"]
