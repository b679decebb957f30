"""Classifier shapes, strict pretrained loading and the classification task contract."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.classifiers import CLASSIFIERS, build_classifier


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
@pytest.mark.parametrize("channels", [1, 3])
def test_every_classifier_maps_images_to_one_logit(name: str, channels: int) -> None:
    model = build_classifier(name, channels).eval()
    with torch.no_grad():
        out = model(torch.rand(2, channels, 32, 32))
    assert tuple(out.shape) == (2, 1)


def test_pretrained_weights_load_strictly_from_a_local_file(tmp_path: Path) -> None:
    source = build_classifier("small")
    torch.save(source.state_dict(), tmp_path / "w.pt")
    loaded = build_classifier("small", pretrained_weights=tmp_path / "w.pt")
    for a, b in zip(source.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    torch.save({"wrong": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(RuntimeError, match="Missing key"):
        build_classifier("small", pretrained_weights=tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError):
        build_classifier("small", pretrained_weights=tmp_path / "none.pt")
    with pytest.raises(ValueError, match="unknown model"):
        build_classifier("vgg19")
