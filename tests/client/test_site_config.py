"""Site config loading and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.errors import SiteDataError
from client.site_config import load_site_config
from tests.conftest import make_site


def test_valid_config_resolves_paths_relative_to_the_yaml(tmp_path: Path) -> None:
    cfg = load_site_config(make_site(tmp_path, "alpha"))
    assert cfg.site == "alpha" and cfg.role == "train" and cfg.trains
    assert cfg.data.manifest == (tmp_path / "alpha" / "manifest.csv").resolve()
    assert cfg.output_dir == (tmp_path / "alpha" / "output").resolve()
    assert cfg.compute.batch_size == 8 and cfg.data.crop == "none"
    assert cfg.privacy.share_case_predictions is False and cfg.privacy.dp.enabled is False


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ("colour: blue\n", "'colour'"),
        ("privacy: {share_case_predictions: false, leak: true}\n", "'privacy.leak'"),
        ("privacy: {share_case_predictions: 'yes'}\n", "'privacy.share_case_predictions'"),
    ],
)
def test_unknown_keys_and_wrong_types_name_the_key(tmp_path: Path, extra: str, named: str) -> None:
    path = make_site(tmp_path, "alpha", extra_yaml=extra)
    with pytest.raises(SiteDataError) as err:
        load_site_config(path)
    assert named in str(err.value) and str(path) in str(err.value)
    assert str(tmp_path) not in err.value.public  # the server-safe form carries no path


def test_missing_manifest_and_bad_role(tmp_path: Path) -> None:
    path = make_site(tmp_path, "alpha")
    (tmp_path / "alpha" / "manifest.csv").unlink()
    with pytest.raises(SiteDataError, match="data.manifest"):
        load_site_config(path)
    path.write_text(path.read_text().replace("role: train", "role: trainer"))
    with pytest.raises(SiteDataError, match="'role'"):
        load_site_config(path)


def test_missing_file_and_crop_box(tmp_path: Path) -> None:
    with pytest.raises(SiteDataError, match="not found"):
        load_site_config(tmp_path / "nowhere.yaml")
    path = make_site(tmp_path, "alpha")
    path.write_text(path.read_text().replace("crop: none", "crop: [2, 3, 40, 30]"))
    assert load_site_config(path).data.crop == (2, 3, 40, 30)
    path.write_text(path.read_text().replace("crop: [2, 3, 40, 30]", "crop: [40, 3, 2, 30]"))
    with pytest.raises(SiteDataError, match="data.crop"):
        load_site_config(path)


def test_an_edited_site_config_is_read_again_and_an_unchanged_one_is_the_same_object(tmp_path: Path) -> None:
    import os

    path = make_site(tmp_path, "a", n=6)
    first = load_site_config(path)
    assert load_site_config(path) is first
    path.write_text(path.read_text().replace("batch_size: 8", "batch_size: 4"))
    later = path.stat().st_mtime_ns + 1  # same size: only the mtime tells the edit
    os.utime(path, ns=(later, later))
    assert load_site_config(path).compute.batch_size == 4
    first.data.manifest.unlink()
    with pytest.raises(SiteDataError, match="key .data.manifest.: file .* not found"):
        load_site_config(path)
