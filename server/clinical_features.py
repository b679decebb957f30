"""The image features of the clinical fusion (``clinical-features``): which encoder embeddings become candidate variables, and their names.

The server decides the columns from the final image model's network (its ``encoders``' widths) and
sends their names in every request, so each site's reply is fixed in length before it is computed.
Names: ``mammography_cc_<i>`` then ``mammography_mlo_<i>`` (the two-view ResNet-18's per-view
features), ``radiomics_cc_<feature>`` then ``radiomics_mlo_<feature>`` (``client/radiomics.py``'s
FEATURE_NAMES, ``models/radiomics_names.py``), ``<modality>_<i>`` otherwise.
"""

from __future__ import annotations

from models.radiomics_names import FEATURE_NAMES
from models.run_config import RunConfig
from protocol.clinical import FeatureBlock
from server.clinical_schema import ClinicalError

VIEWS = ("cc", "mlo")  # the mammography encoders' order of the views


def feature_names(modality: str, dim: int) -> tuple[str, ...]:
    """The design column names of a ``dim``-wide embedding of ``modality``."""
    if modality == "radiomics":
        if dim != len(VIEWS) * len(FEATURE_NAMES):
            raise ClinicalError(f"the radiomics encoder gives {dim} features, not {len(VIEWS)} x {len(FEATURE_NAMES)}")
        return tuple(f"radiomics_{view}_{name}" for view in VIEWS for name in FEATURE_NAMES)
    if modality == "mammography" and dim % len(VIEWS) == 0:
        half = dim // len(VIEWS)
        return tuple(f"mammography_{view}_{i}" for view in VIEWS for i in range(half))
    return tuple(f"{modality}_{i}" for i in range(dim))


def feature_blocks(cfg: RunConfig) -> tuple[FeatureBlock, ...]:
    """The blocks of ``clinical-features`` for the final image model of run config ``cfg``; ``ClinicalError`` naming the key when it cannot serve them."""
    wanted = cfg.clinical_feature_list
    if not wanted:
        return ()
    import torch

    from models.task import build_network

    with torch.device("meta"):  # the encoders' widths only: no weights are allocated
        encoders = getattr(build_network(cfg), "encoders", None)
    if encoders is None:
        raise ClinicalError(
            f"run config 'clinical-features' = {cfg.clinical_features!r} takes the final image model's modality embeddings, "
            f"and its model (task = {cfg.task!r}) has no modality encoders (a multimodal task's has: fusion, mammography, pathology)"
        )
    for modality in wanted:
        if modality not in encoders:
            raise ClinicalError(
                f"run config 'clinical-features' entry '{modality}': the final image model has no {modality} encoder (its modalities: {', '.join(encoders)})"
            )
    return tuple(FeatureBlock(m, feature_names(m, int(encoders[m].dim))) for m in wanted)
