"""The ServerApp's logging: axilla's records reach Flower's log stream unless someone already handles them."""

from __future__ import annotations

import logging

from server.flower_compat import FLOWER_LOGGER

from server.app import log_through_flower


def test_axilla_logs_go_through_flowers_handlers_only_when_unhandled() -> None:
    axilla = logging.getLogger("axilla")
    saved = (list(axilla.handlers), axilla.propagate, axilla.level)
    try:
        axilla.handlers = []
        log_through_flower()
        assert FLOWER_LOGGER.handlers and all(h in axilla.handlers for h in FLOWER_LOGGER.handlers)
        assert axilla.propagate is False and axilla.level == logging.INFO
        own = logging.StreamHandler()
        axilla.handlers = [own]
        log_through_flower()
        assert axilla.handlers == [own]  # axilla-simulate's handler: no duplicate lines
    finally:
        axilla.handlers, axilla.propagate = saved[0], saved[1]
        axilla.setLevel(saved[2])
