"""FedBN (Li et al., ICLR 2021): FedAvg of every entry but the normalisation layers', which stay at each site."""

from __future__ import annotations

from typing import Any

from flwr.app import ArrayRecord

from strategies.site_aware import SiteFedAvg
from strategies.sites import NodeSite


class SiteFedBN(SiteFedAvg):
    """FedAvg over the shared entries; the global model's normalisation entries (``local_keys``) are never changed.

    Sites reply without their normalisation entries (``client/fedbn.py``), so a reply's arrays must
    have the global model's layout less ``local_keys``; the aggregate is completed with the global
    model's own normalisation entries, which external sites evaluate with.
    """

    def __init__(self, sites: dict[int, NodeSite], local_keys: tuple[str, ...], *args: Any, **kwargs: Any) -> None:
        """``local_keys``: the network's normalisation entries (``models.norm_state.norm_state_keys``); the rest as ``SiteFedAvg``."""
        super().__init__(sites, *args, **kwargs)
        self.local_keys = frozenset(local_keys)

    def _reply_template(self, arrays: ArrayRecord) -> ArrayRecord:
        """The global model without its normalisation entries."""
        return ArrayRecord({k: v for k, v in arrays.items() if k not in self.local_keys})

    def _completed(self, arrays: ArrayRecord, updates: dict[int, ArrayRecord]) -> ArrayRecord:
        """The aggregate of the shared entries, with the global model's normalisation entries unchanged, in the model's order."""
        assert self._global is not None
        return ArrayRecord({k: (arrays[k] if k in arrays else v) for k, v in self._global.items()})
