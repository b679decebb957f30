"""FedBN at a site: normalisation state kept on disk, loaded over the global model, never sent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from flwr.app import ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.app.metadata import Metadata

from client.fedbn import keep_norms, shared_layout, with_local_norms
from client.privacy_guard import policy_violations
from client.work import model_layout
from models.norm_state import network_keys
from models.run_config import RunConfig
from models.task import build_network
from protocol.messages import Evaluate, Train
from protocol.packing import layout_digest, pack
from tests.client.test_local_state import read_in_new_process

RUN = RunConfig(strategy="fedbn", run_id="r1")
NORM = network_keys(RUN)[0]


def _trained(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model with every entry changed, as after local training."""
    return {k: v + 3 if k.endswith("num_batches_tracked") else v + 0.25 for k, v in state.items()}


def test_a_site_keeps_its_normalisation_state_and_sends_the_rest(tmp_path: Path) -> None:
    glob = build_network(RUN).state_dict()
    trained = _trained(glob)
    sent = keep_norms(trained, tmp_path, Train(run=RUN, server_round=2), "federated")
    assert not set(sent) & set(NORM) and set(sent) | set(NORM) == set(glob)
    loaded = with_local_norms(glob, tmp_path, Train(run=RUN, server_round=3), "federated", training=True)
    for key in glob:
        assert torch.equal(loaded[key], trained[key] if key in NORM else glob[key]), key
    evaluated = with_local_norms(glob, tmp_path, Evaluate(run=RUN, server_round=3), "federated", training=False)
    assert all(torch.equal(evaluated[k], trained[k]) for k in NORM)


def test_the_first_round_another_model_and_an_external_site_use_the_global_normalisation(tmp_path: Path) -> None:
    glob = build_network(RUN).state_dict()
    keep_norms(_trained(glob), tmp_path / "a", Train(run=RUN, server_round=2), "federated")
    first = with_local_norms(glob, tmp_path / "a", Train(run=RUN, server_round=1), "federated", training=True)
    other_model = with_local_norms(glob, tmp_path / "a", Evaluate(run=RUN, server_round=3), "local:b", training=False)
    external = with_local_norms(glob, tmp_path / "ext", Evaluate(run=RUN, server_round=3), "federated", training=False)
    for state in (first, other_model, external):
        assert all(torch.equal(state[k], glob[k]) for k in glob)


def test_the_kept_state_is_read_back_by_a_new_process(tmp_path: Path) -> None:
    glob = build_network(RUN).state_dict()
    keep_norms(_trained(glob), tmp_path, Train(run=RUN, server_round=2), "federated")
    names, total = read_in_new_process(tmp_path, "norm", layout_digest(model_layout(RUN)))
    assert names == sorted(NORM) and total == pytest.approx(sum(float(_trained(glob)[k].double().sum()) for k in NORM), rel=1e-9)


def _train_message(run: RunConfig, model: ArrayRecord) -> Message:
    meta = Metadata(
        run_id=1, message_id="m1", src_node_id=0, dst_node_id=7, reply_to_message_id="", group_id="1",
        created_at=0.0, ttl=60.0, message_type=MessageType.TRAIN,
    )  # fmt: skip
    return Message(metadata=meta, content=RecordDict(Train(run=run).records(arrays=model)))


def _reply(incoming: Message, arrays: ArrayRecord) -> Message:
    return Message(RecordDict({"arrays": arrays, "metrics": MetricRecord({"num_examples": 4})}), reply_to=incoming)


def test_the_privacy_guard_refuses_a_fedbn_reply_that_carries_normalisation_entries() -> None:
    glob = build_network(RUN).state_dict()
    shared = pack(ArrayRecord({k: v for k, v in glob.items() if k not in NORM}))
    full = pack(ArrayRecord(glob))
    incoming = _train_message(RUN, ArrayRecord(glob))
    assert policy_violations(incoming, _reply(incoming, shared)) == []
    (problem,) = policy_violations(incoming, _reply(incoming, full))
    assert "less its normalisation entries" in problem
    assert len(shared_layout(RUN)) == len(glob) - len(NORM)
    fedavg = _train_message(RUN.replace(strategy="fedavg"), ArrayRecord(glob))  # without FedBN, the whole model and only it
    assert policy_violations(fedavg, _reply(fedavg, full)) == [] and policy_violations(fedavg, _reply(fedavg, shared)) != []
