"""The Flower names server/flower_compat.py relies on: each exists, with the parameters it is called with."""

from __future__ import annotations

import inspect
import logging

import flwr.common
import flwr.simulation
import pytest
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp

from server import flower_compat
from server.flower_compat import (
    FLOWER_CONTRACT,
    FLOWER_LOGGER,
    FlowerCompatError,
    aggregate_metric_records,
    flower_attribute,
    flower_log_handlers,
    run_simulation_with_run_config,
    set_server_task_identity,
)


@pytest.mark.parametrize("target", sorted(FLOWER_CONTRACT))
def test_every_flower_name_the_adapter_uses_exists_with_its_parameters(target: str) -> None:
    obj = flower_attribute(target)  # raises FlowerCompatError naming the module and attribute
    expected = FLOWER_CONTRACT[target]
    if expected:
        params = list(inspect.signature(obj).parameters)
        missing = [p for p in expected if p not in params]
        assert not missing, (
            f"Flower {flower_compat.flower_version()} changed {target}: expected parameters {expected}, "
            f"found {params}; update server/flower_compat.py"
        )


def test_a_missing_flower_name_is_reported_by_module_and_attribute() -> None:
    with pytest.raises(FlowerCompatError, match=r"flwr\.simulation\.no_such_function \(missing 'no_such_function'\)"):
        flower_attribute("flwr.simulation:no_such_function")
    with pytest.raises(FlowerCompatError, match="no module flwr.no_such_module"):
        flower_attribute("flwr.no_such_module:x")


def test_flower_logger_is_the_one_behind_the_public_log_function_and_has_handlers() -> None:
    assert getattr(flwr.common.log, "__self__", None) is FLOWER_LOGGER, (
        f"Flower's public flwr.common.log no longer logs through logging.getLogger({flower_compat.FLOWER_LOGGER_NAME!r})"
    )
    assert isinstance(FLOWER_LOGGER, logging.Logger) and flower_log_handlers() == FLOWER_LOGGER.handlers != []


def test_task_identity_lets_messages_be_built_outside_flowers_runtime() -> None:
    set_server_task_identity(run_id=7, task_id=3, node_id=0)
    identity = flower_attribute(":".join(flower_compat.TASK_IDENTITY))
    for name, value in zip(flower_compat.TASK_IDENTITY_FIELDS, (3, 7, 0), strict=True):
        assert getattr(identity, name, None) == value, f"flwr.supercore.task_identity.TaskIdentity.{name} did not keep the value set"
    message = Message(RecordDict(), dst_node_id=5, message_type="query")
    assert (message.metadata.run_id, message.metadata.src_node_id, message.metadata.src_task_id) == (7, 0, 3)
    assert message.metadata.dst_node_id == 5
    set_server_task_identity()  # back to the identity the other tests build messages with
    assert Message(RecordDict(), dst_node_id=1, message_type="query").metadata.run_id == 1


def test_metric_records_are_averaged_by_weight_leaving_the_weight_out() -> None:
    records = [
        RecordDict({"m": MetricRecord({"num_examples": 1, "auc": 0.5, "band": [0.0, 1.0]})}),
        RecordDict({"m": MetricRecord({"num_examples": 3, "auc": 0.9, "band": [1.0, 1.0]})}),
    ]
    out = aggregate_metric_records(records, "num_examples")
    assert "num_examples" not in out
    assert out["auc"] == pytest.approx(0.8)
    assert out["band"] == pytest.approx([0.75, 1.0])
    with pytest.raises(ValueError, match="num_examples"):
        aggregate_metric_records([RecordDict({"m": MetricRecord({"num_examples": 0, "auc": 0.5})})], "num_examples")


def test_simulation_gives_the_server_app_its_run_config_through_the_public_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stands in for Flower's engine: it calls the ServerApp with the empty context the public call makes."""
    seen: dict[str, object] = {}
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        seen["run_config"] = dict(context.run_config)
        seen["run_id"] = context.run_id

    def fake_run_simulation(server_app: ServerApp, client_app: object, num_supernodes: int, backend_config: dict) -> None:
        seen["call"] = (client_app, num_supernodes, backend_config)
        flower_compat.FLOWER_LOGGER.warning("DEPRECATED FEATURE: The `run_simulation` function is deprecated")
        server_app(None, Context(run_id=42, node_id=0, node_config={}, state=RecordDict(), run_config={}))  # type: ignore[arg-type]

    monkeypatch.setattr(flwr.simulation, "run_simulation", fake_run_simulation)
    shown: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: shown.append(record.getMessage())  # type: ignore[method-assign]
    FLOWER_LOGGER.addHandler(handler)
    try:
        run_simulation_with_run_config(app, "client", 3, {"init_args": {}}, {"num-rounds": 2, "task": "classification"})
    finally:
        FLOWER_LOGGER.removeHandler(handler)
    assert seen == {"call": ("client", 3, {"init_args": {}}), "run_config": {"num-rounds": 2, "task": "classification"}, "run_id": 42}
    assert not any("deprecated" in line for line in shown)
    assert not any(isinstance(f, flower_compat._DropDeprecationNotice) for f in FLOWER_LOGGER.filters)  # removed again
