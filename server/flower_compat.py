"""The one place where axilla reaches past Flower's public API; tests/server/test_flower_compat.py checks each reach.

Flower's public modules (``flwr.app``, ``flwr.serverapp``, ``flwr.clientapp``, ``flwr.simulation``,
``flwr.common``) cover nearly everything axilla needs. Where they do not, the gap is bridged here,
in small functions, so a Flower upgrade that moves a private name breaks one module and one test
that names what moved, not the ServerApp, the strategies and the tests all at once:

- ``run_simulation_with_run_config``: the public ``flwr.simulation.run_simulation`` cannot give the
  ServerApp a run config; a thin ServerApp around ours puts it into the context (public API only).
- ``FLOWER_LOGGER`` / ``flower_log_handlers``: Flower's logger, whose handlers reach
  ``flwr run --stream`` and ``flwr log``; taken by its name ``flwr``, the logger of the public
  ``flwr.common.log``.
- ``set_server_task_identity``: ``Message(...)`` reads the process's task identity, which only
  Flower's runtime sets (``flwr.supercore.task_identity.TaskIdentity``, private); messages built
  outside it (tests, in-process grids) need it set.
- ``aggregate_metric_records``: the case-weighted mean of metric records that Flower's strategies
  compute in a private helper; ours, on public record types.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flwr.app import Context, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

FLOWER_LOGGER_NAME = "flwr"
TASK_IDENTITY = ("flwr.supercore.task_identity", "TaskIdentity")  # private: module, attribute
TASK_IDENTITY_FIELDS = ("task_id", "run_id", "node_id")

# What this module relies on, checked by tests/server/test_flower_compat.py: "module:attribute" -> parameter names.
FLOWER_CONTRACT: dict[str, tuple[str, ...]] = {
    "flwr.simulation:run_simulation": ("server_app", "client_app", "num_supernodes", "backend_config"),
    "flwr.serverapp:ServerApp.__call__": ("grid", "context"),
    "flwr.serverapp:ServerApp.main": (),
    "flwr.app:Context": ("run_id", "node_id", "node_config", "state", "run_config"),
    "flwr.common:log": ("level", "msg"),
    "flwr.supercore.task_identity:TaskIdentity": (),
    # Central DP's accounting (strategies/central_dp.py): public since Flower 1.42, with the ``dp`` extra.
    "flwr.serverapp:RdpAccountant": ("config",),
    "flwr.serverapp:PrivacyConfig": ("target_delta", "population_size", "neighboring_relation", "sampling_method"),
    "flwr.serverapp:GaussianPrivacyEvent": ("noise_multiplier", "sample_size", "population_size"),
}


class FlowerCompatError(RuntimeError):
    """The installed Flower lacks a name this module relies on (see ``FLOWER_CONTRACT``)."""


def flower_attribute(target: str) -> Any:
    """The object ``"module:attr.sub"`` names, or a FlowerCompatError naming what is missing."""
    module_name, _, path = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise FlowerCompatError(f"Flower {flower_version()} has no module {module_name} (needed for {target}); update server/flower_compat.py") from err
    for part in path.split("."):
        if not hasattr(obj, part):
            raise FlowerCompatError(f"Flower {flower_version()} has no {module_name}.{path} (missing '{part}'); update server/flower_compat.py")
        obj = getattr(obj, part)
    return obj


def flower_version() -> str:
    """The installed Flower's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flwr")
    except PackageNotFoundError:
        return "(not installed)"


def flower_logger() -> logging.Logger:
    """Flower's logger, with the handlers Flower installed on import (``flwr.app`` above imports them)."""
    return logging.getLogger(FLOWER_LOGGER_NAME)


FLOWER_LOGGER = flower_logger()


def flower_log_handlers() -> list[logging.Handler]:
    """The handlers of Flower's logger (console, and the ones that feed ``flwr log``)."""
    return list(flower_logger().handlers)


def set_server_task_identity(run_id: int = 1, task_id: int = 1, node_id: int = 0) -> None:
    """Give this process a ServerApp task identity, so ``Message(...)`` can be built outside Flower's runtime."""
    identity = flower_attribute(":".join(TASK_IDENTITY))
    for name, value in zip(TASK_IDENTITY_FIELDS, (task_id, run_id, node_id), strict=True):
        setattr(identity, name, value)


def aggregate_metric_records(records: Sequence[RecordDict], weighting_metric_name: str) -> MetricRecord:
    """Weighted mean of every metric of the records' metric records (lists element-wise); the weight key is left out."""
    weights = [float(next(iter(r.metric_records.values()))[weighting_metric_name]) for r in records]  # type: ignore[arg-type]
    total = sum(weights)
    if not records or total <= 0:
        raise ValueError(f"cannot weight by '{weighting_metric_name}': total weight {total}")
    out = MetricRecord()
    for record, weight in zip(records, weights, strict=True):
        share = weight / total
        for metrics in record.metric_records.values():
            for key, value in metrics.items():
                if key == weighting_metric_name:
                    continue
                if isinstance(value, list):
                    previous = out[key] if key in out else [0.0] * len(value)
                    out[key] = [p + share * v for p, v in zip(previous, value, strict=True)]  # type: ignore[arg-type, operator]
                else:
                    out[key] = (out[key] if key in out else 0.0) + share * value  # type: ignore[operator]
    return out


def with_run_config(server_app: ServerApp, run_config: Mapping[str, bool | float | int | str]) -> ServerApp:
    """A ServerApp that runs ``server_app`` with ``run_config`` in its context (the rest of the context is Flower's)."""
    wrapper = ServerApp()

    @wrapper.main()
    def main(grid: Grid, context: Context) -> None:
        """Put the run config into Flower's context, then run the wrapped app (its lifespan included)."""
        context.run_config = dict(run_config)
        server_app(grid, context)

    return wrapper


class _DropDeprecationNotice(logging.Filter):
    """Hides the notice that ``run_simulation`` is deprecated: axilla-simulate's users cannot act on it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "run_simulation` function is deprecated" not in record.getMessage()


def run_simulation_with_run_config(
    server_app: ServerApp,
    client_app: ClientApp,
    num_supernodes: int,
    backend_config: Mapping[str, Any],
    run_config: Mapping[str, bool | float | int | str],
) -> None:
    """Flower's public ``run_simulation``, with ``run_config`` given to the ServerApp's context."""
    run_simulation: Callable[..., None] = flower_attribute("flwr.simulation:run_simulation")
    notice = _DropDeprecationNotice()
    FLOWER_LOGGER.addFilter(notice)
    try:
        run_simulation(
            server_app=with_run_config(server_app, run_config),
            client_app=client_app,
            num_supernodes=num_supernodes,
            backend_config=dict(backend_config),
        )
    finally:
        FLOWER_LOGGER.removeFilter(notice)

