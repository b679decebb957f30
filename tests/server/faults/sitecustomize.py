"""Fault injection for deployment tests: a site whose training returns NaN weights, or waits for a gate.

Put this folder on PYTHONPATH and set AXILLA_FAULT for one site's axilla-client; in every process of
that site that imports ``client.site`` (Flower's ClientApp processes, or a long-lived site worker
that trains for them) its ``train_round`` is replaced:

- ``nan-update``: training runs normally and then every floating-point array of the update is NaN;
- ``hold``: from server round 2 on, training starts only once the file named by AXILLA_HOLD_UNTIL
  exists (a test opens the gate when what it waits for has happened; 600 s at most).

The patch is made when ``client.site`` is first imported, so a later ``from client.site import
train_round`` gets the faulty one too; processes that never import it (the SuperNode, SuperExec)
are left alone.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import time
from types import ModuleType

TARGET = "client.site"


HOLD_LIMIT_S = 600.0


def _make_faulty(module: ModuleType) -> None:
    """Replace ``module.train_round`` by the faulty one AXILLA_FAULT names."""
    module.train_round = FAULTS[os.environ["AXILLA_FAULT"]](module.train_round)


def _held(train_round):  # type: ignore[no-untyped-def]
    """``train_round`` that, from round 2 on, waits for the gate file first."""
    gate = os.environ["AXILLA_HOLD_UNTIL"]

    def held_round(*args, **kwargs):  # type: ignore[no-untyped-def]
        server_round = kwargs.get("server_round", args[3] if len(args) > 3 else 1)
        deadline = time.monotonic() + HOLD_LIMIT_S
        while server_round >= 2 and not os.path.exists(gate):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gate {gate} was not opened within {HOLD_LIMIT_S:.0f} s")
            time.sleep(0.2)  # polling a condition (the gate file), not standing in for one
        return train_round(*args, **kwargs)

    return held_round


def _nan(train_round):  # type: ignore[no-untyped-def]
    """``train_round`` whose update is all NaN."""

    def nan_round(*args, **kwargs):  # type: ignore[no-untyped-def]
        import torch

        state, metrics = train_round(*args, **kwargs)
        return {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}, metrics

    return nan_round


FAULTS = {"nan-update": _nan, "hold": _held}


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds ``client.site`` the normal way and patches it right after it has run."""

    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname != TARGET:
            return None
        sys.meta_path.remove(self)  # once per process; the normal finders do the finding
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            _make_faulty(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if os.environ.get("AXILLA_FAULT") in FAULTS:
    if TARGET in sys.modules:
        _make_faulty(sys.modules[TARGET])
    else:
        sys.meta_path.insert(0, _PatchOnImport())
