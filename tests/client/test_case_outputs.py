"""The image model's outputs a site computes for the clinical jobs: the signature and each modality encoder's embedding of a case."""

from __future__ import annotations

import numpy as np
import torch

from client.case_outputs import CaseOutputs, model_outputs
from models.modality_encoders import RADIOMICS_DIM
from models.run_config import RunConfig
from models.task import build_network, task_for

CFG = RunConfig(task="fusion", modalities="mammography,radiomics", fusion="multilayer", mammo_size=32, mammo_width=2)


def _batches(seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Two batches of 3 cases; case 1 lacks radiomics, case 4 mammography."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for absent in ((1, 1), (1, 0)):
        batch = {"mammo": torch.rand(3, 2, 1, 32, 32, generator=g), "radiomics": torch.randn(3, RADIOMICS_DIM, generator=g), "label": torch.tensor([0, 1, 1])}
        batch["present"] = torch.ones(3, 2, dtype=torch.bool)
        batch["present"][absent] = False
        batch["has_mask"] = torch.zeros(3, dtype=torch.bool)
        out.append(batch)
    return out


def test_the_embedding_columns_are_the_encoders_own_output_nan_where_the_case_lacks_the_modality() -> None:
    torch.manual_seed(0)
    model = build_network(CFG).eval()
    with torch.no_grad():  # give the standardiser non-trivial statistics, as the federation would
        model.encoders["radiomics"].standardise.mean.copy_(torch.linspace(-1, 1, RADIOMICS_DIM))
        model.encoders["radiomics"].standardise.sd.copy_(torch.linspace(0.5, 2, RADIOMICS_DIM))
    batches = _batches()
    scores, embeddings = model_outputs(model, batches, task_for(CFG), torch.device("cpu"))  # type: ignore[arg-type]
    assert set(embeddings) == {"mammography", "radiomics"}
    assert embeddings["mammography"].shape == (6, 2 * 8 * CFG.mammo_width) and embeddings["radiomics"].shape == (6, RADIOMICS_DIM)
    with torch.no_grad():
        for m, modality in enumerate(("mammography", "radiomics")):
            for b, batch in enumerate(batches):
                rows = batch["present"][:, m]
                direct = model.encoders[modality].embed(batch, rows).double().numpy()  # only the rows having it
                got = embeddings[modality][3 * b : 3 * b + 3]
                np.testing.assert_allclose(got[rows.numpy()], direct, rtol=1e-5, atol=1e-6)
                assert np.isnan(got[~rows.numpy()]).all()
        expected = torch.cat([torch.sigmoid(model(batch)).flatten() for batch in batches]).numpy()
    assert scores is not None
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    with torch.no_grad():  # CC's features first, then MLO's
        backbone, views = model.encoders["mammography"].net.backbones[0], batches[0]["mammo"]
        cc, mlo = backbone(views[:, 0]).double().numpy(), backbone(views[:, 1]).double().numpy()
    np.testing.assert_allclose(embeddings["mammography"][:3], np.hstack([cc, mlo]), rtol=1e-5, atol=1e-6)
    assert not model.encoders["radiomics"]._forward_hooks  # the hooks are removed after the pass


def test_a_model_without_encoders_gives_scores_and_no_embeddings() -> None:
    cfg = RunConfig(image_size=32)
    model = build_network(cfg).eval()
    batch = {"image": torch.rand(4, 1, 32, 32), "label": torch.tensor([0, 1, 0, 1]), "has_mask": torch.zeros(4, dtype=torch.bool), "mask": torch.zeros(4, 1, 32, 32)}
    scores, embeddings = model_outputs(model, [batch], task_for(cfg), torch.device("cpu"))  # type: ignore[arg-type]
    assert scores is not None and scores.shape == (4,) and embeddings == {}


def test_cases_are_looked_up_by_case_and_split_and_unknown_ones_are_nan() -> None:
    outputs = CaseOutputs({("c1", "train"): 0, ("c2", "test"): 1}, np.array([0.5, -1.0]), {"radiomics": np.array([[1.0, 2.0], [3.0, 4.0]])})
    keys = [("c2", "test"), ("c1", "test"), ("c1", "train")]
    np.testing.assert_array_equal(outputs.signature(keys), [-1.0, np.nan, 0.5])
    np.testing.assert_array_equal(outputs.features("radiomics", keys), [[3.0, 4.0], [np.nan, np.nan], [1.0, 2.0]])
