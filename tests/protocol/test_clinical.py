"""The clinical protocol's image-feature blocks: they fix the design's columns, and a malformed one is refused."""

from __future__ import annotations

import pytest

from protocol.clinical import SIGNATURE, ClinicalQuery, Design, FeatureBlock, Fit, LinearScore, Spec, Variable
from protocol.messages import ProtocolError

BLOCK = FeatureBlock("mammography", ("mammography_cc_0", "mammography_cc_1", "mammography_mlo_0", "mammography_mlo_1"))


def test_feature_columns_follow_the_signature_and_survive_the_round_trip() -> None:
    design = Design((Variable("her2", "binary", ("0", "1")),), signature=True, features=(BLOCK,))
    assert design.names == ("intercept", "her2", SIGNATURE, *BLOCK.names)
    scored = Design(design.variables, True, (LinearScore("mammography-features", design, (0, 3), (0.1, 0.2)),), features=(BLOCK,))
    assert scored.names[-1] == "score:mammography-features"
    assert Design.from_dict(scored.to_dict()) == scored
    query = ClinicalQuery(job="logit", spec=Spec(design=design, fits=(Fit(tuple(range(design.width)), (0.0,) * design.width),)).to_json())
    assert query.allowed_metrics()["r0/information"] == 7 * 7  # every feature column counted by the request


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"modality": "genomics", "names": ["g_0"]}, "not an image-feature block"),
        ({"modality": "radiomics", "names": []}, "1 to 4096 columns"),
        ({"modality": "radiomics", "names": ["radiomics/cc"]}, "image feature name"),
    ],
)
def test_a_malformed_feature_block_is_refused(raw: dict, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        Design.from_dict({"features": [raw]})


def test_a_feature_named_like_a_clinical_column_is_refused() -> None:
    with pytest.raises(ProtocolError, match="distinct"):
        Design.from_dict({"variables": [{"name": "age", "kind": "continuous"}], "features": [{"modality": "radiomics", "names": ["age"]}]})
