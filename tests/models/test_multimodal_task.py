"""The multimodal tasks: every modality's encoder, fusion with masked modalities, encoders taken over or frozen."""

from __future__ import annotations

import pytest
import torch

from client.radiomics import FEATURE_NAMES
from models.modality_encoders import RADIOMICS_DIM
from models.multimodal_task import MultimodalNet
from models.run_config import FUSION_BLOCKS, RunConfig, RunConfigError
from models.stages import modality_config, plan_for, stage_config
from models.task import build_network, task_for

MODALITIES = ("ultrasound", "pathology", "mammography", "radiomics")
CFG = RunConfig(
    task="fusion", modalities=",".join(MODALITIES), image_size=32, pathology_size=32, pathology_patches=3, pathology_width=4, mammo_size=32, mammo_width=4,
)  # fmt: skip


def _batch(n: int = 4, seed: int = 0, modalities: tuple[str, ...] = MODALITIES) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch = {
        "image": torch.rand(n, 1, 32, 32, generator=g), "label": torch.arange(n) % 2,
        "pathology": torch.randint(0, 256, (n, 3, 3, 32, 32), generator=g, dtype=torch.uint8), "pathology_count": torch.tensor([3, 1, 2, 3][:n]),
        "mammo": torch.rand(n, 2, 1, 32, 32, generator=g), "radiomics": torch.randn(n, RADIOMICS_DIM, generator=g),
    }  # fmt: skip
    batch["present"] = torch.ones(n, len(modalities), dtype=torch.bool)
    return batch


def test_the_clinical_modality_reads_the_named_variables_z_scored() -> None:
    cfg = CFG.replace(modalities="ultrasound,clinical", clinical_variables="age,ki67")
    net = build_network(cfg).eval()
    batch = _batch(modalities=("ultrasound", "clinical")) | {"clinical": torch.tensor([[50.0, 20.0], [60.0, float("nan")], [40.0, 10.0], [55.0, 30.0]])}
    assert net(batch).shape == (4, 1) and torch.isfinite(net(batch)).all()  # a missing value is the federation's mean after z-scoring
    with pytest.raises(RunConfigError, match="clinical-variables"):
        CFG.replace(modalities="ultrasound,clinical")


def test_the_radiomics_width_is_the_feature_count_of_both_views() -> None:
    import numpy as np

    from client.radiomics import radiomics_vector

    image, mask = np.random.default_rng(0).random((24, 24)), np.zeros((24, 24), bool)
    mask[6:16, 5:18] = True
    assert RADIOMICS_DIM == 2 * len(radiomics_vector(image, mask)) == 2 * len(FEATURE_NAMES)


@pytest.mark.parametrize("task", ["pathology", "mammography"])
def test_a_single_modality_task_gives_one_logit_per_case(task: str) -> None:
    cfg = CFG.replace(task=task)
    modality = task_for(cfg).inputs(cfg).modal.modalities  # type: ignore[union-attr]
    assert modality == (task,)
    out = build_network(cfg)(_batch(modalities=modality))
    assert out.shape == (4, 1) and torch.isfinite(out).all()


@pytest.mark.parametrize("block", FUSION_BLOCKS)
def test_every_fusion_block_fuses_every_modality_into_one_logit_per_case(block: str) -> None:
    cfg = CFG.replace(fusion=block)
    net = build_network(cfg)
    out = net(_batch())
    assert out.shape == (4, 1)
    task_for(cfg).loss()(out, task_for(cfg).targets(_batch())).backward()
    assert all(p.grad is not None for p in net.encoders["pathology"].net.blocks.parameters())  # the fused loss reaches the patch network


@pytest.mark.parametrize("block", FUSION_BLOCKS)
def test_an_absent_modality_changes_no_case_output(block: str) -> None:
    net = build_network(CFG.replace(fusion=block)).eval()
    batch = _batch()
    batch["present"][1, 1] = False  # case 1 has no pathology ...
    batch["pathology_count"][1] = 0
    other = {k: v.clone() for k, v in batch.items()}
    other["pathology"][1] = 255 - other["pathology"][1]  # ... so what its pathology slot holds cannot matter
    with torch.no_grad():
        torch.testing.assert_close(net(batch), net(other))
        batch["present"][1, 1] = True
        batch["pathology_count"][1] = 3
        assert not torch.allclose(net(batch)[1], net(other)[1])  # present, it does


def test_a_fusion_stage_takes_over_the_single_modality_encoders() -> None:
    cfg = CFG.replace(pipeline="fusion", fusion_strategies="multilayer")
    plan = plan_for(cfg)
    fusion = plan.stage("fusion-multilayer")
    singles = {m: build_network(modality_config(cfg, m).replace(seed=7)) for m in fusion.init_from}
    net = build_network(fusion.cfg)
    task_for(fusion.cfg).initialise(net, singles)
    for modality, single in singles.items():
        for key, value in single.encoders[modality].state_dict().items():
            assert torch.equal(net.encoders[modality].state_dict()[key], value)
    scratch = build_network(fusion.cfg.replace(fusion_training="scratch"))
    before = {k: v.clone() for k, v in scratch.state_dict().items()}
    task_for(fusion.cfg.replace(fusion_training="scratch")).initialise(scratch, singles)
    assert all(torch.equal(before[k], v) for k, v in scratch.state_dict().items())


def test_frozen_encoders_keep_weights_and_statistics_while_the_block_trains() -> None:
    cfg = CFG.replace(fusion_training="frozen")
    net = build_network(cfg)
    assert isinstance(net, MultimodalNet)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    optimiser = torch.optim.SGD(net.parameters(), lr=0.1)
    task = task_for(cfg)
    task.loss()(net(_batch()), task.targets(_batch())).backward()
    optimiser.step()
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("encoders."))  # weights and BatchNorm running statistics
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("fusion."))


def test_the_fusion_plan_trains_each_modality_then_each_block_compared_with_every_modality() -> None:
    cfg = CFG.replace(pipeline="fusion", modalities="ultrasound,pathology", fusion_strategies="voting,multilayer", num_rounds=3)
    plan = plan_for(cfg)
    assert [(s.name, s.offset, s.row) for s in plan.stages] == [
        ("ultrasound", 0, "ultrasound"), ("pathology", 3, "pathology"), ("fusion-voting", 6, "fusion-voting"), ("fusion-multilayer", 9, "fusion-multilayer"),
    ]  # fmt: skip
    last = plan.last
    assert (last.compare_with, last.init_from, last.cfg.fusion) == (("ultrasound", "pathology"), ("ultrasound", "pathology"), "multilayer")
    assert stage_config(last.cfg, "pathology").modality_list == ("pathology",)  # a site rebuilds the plan from a fusion stage's config
    assert plan_for(cfg.replace(fusion_training="scratch")).last.init_from == ()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"modalities": "ultrasound,xray"}, "'modalities' entry 'xray'"),
        ({"modalities": "pathology,pathology"}, "names a modality twice"),
        ({"pipeline": "fusion", "modalities": "pathology"}, "at least two 'modalities'"),
        ({"fusion_strategies": "concat,mean"}, "'fusion-strategies' entry 'mean'"),
        ({"pathology_model": "vit", "pathology_size": 40}, "not a multiple of 16"),
        ({"fusion_training": "partly"}, "'fusion-training'"),
    ],
)
def test_multimodal_settings_out_of_range_are_refused_by_name(changes: dict[str, object], message: str) -> None:
    with pytest.raises(RunConfigError, match=message):
        CFG.replace(**changes)
