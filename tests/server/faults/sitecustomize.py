"""Fault injection for deployment tests: a site whose training returns NaN weights.

Put this folder on PYTHONPATH and set AXILLA_FAULT=nan-update for one site's axilla-client: in every
process of that site that imports ``client.site`` (Flower's ClientApp processes, or a long-lived
site worker that trains for them), training runs normally and then every floating-point array of
the update is replaced with NaN. The patch is made when ``client.site`` is first imported, so a
later ``from client.site import train_round`` gets the faulty one too; processes that never
import it (the SuperNode, SuperExec) are left alone.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from types import ModuleType

TARGET = "client.site"


def _make_faulty(module: ModuleType) -> None:
    """Replace ``module.train_round`` by one whose update is all NaN."""
    train_round = module.train_round

    def nan_round(*args, **kwargs):  # type: ignore[no-untyped-def]
        import torch

        state, metrics = train_round(*args, **kwargs)
        return {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}, metrics

    module.train_round = nan_round


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


if os.environ.get("AXILLA_FAULT") == "nan-update":
    if TARGET in sys.modules:
        _make_faulty(sys.modules[TARGET])
    else:
        sys.meta_path.insert(0, _PatchOnImport())
