"""Models a stage refers to travel once per site, and again to a site that did not answer."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord

from models.run_config import RunConfig
from protocol.messages import RUN, array_digest, model_record_name, wire_model
from protocol.packing import pack
from server.federation import Courier


def test_a_model_is_sent_once_per_node_and_again_after_a_failed_reply() -> None:
    unet = ArrayRecord({"w": Array(np.ones((2, 2), np.float32))})
    courier = Courier()
    delivery = courier.delivery(RunConfig(), {"unet": unet})
    digest, wired = wire_model(unet)
    name = model_record_name(digest)
    assert delivery.refs == (("unet", digest),) and digest == array_digest(pack(unet))  # referred to by its packed form
    assert delivery.records_for(3)[name].keys() == wired.keys()  # and sent packed
    assert set(delivery.records_for(1)) == {RUN, name} and set(delivery.records_for(2)) == {RUN, name}
    assert set(delivery.records_for(1)) == {RUN}  # node 1 holds it now
    delivery.settled(1, ok=True)
    delivery.settled(2, ok=False)  # node 2 did not answer: it may not have stored it
    later = courier.delivery(RunConfig(task="segmentation"), {"unet": unet})  # another stage, same model
    assert set(later.records_for(1)) == {RUN} and set(later.records_for(2)) == {RUN, name}
