"""A site's cases read once per manifest version: the same rows while the file is unchanged, the new ones after an edit."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from client.site_config import load_site_config
from client.site_index import read_cases
from tests.conftest import make_site


def test_cases_are_read_again_when_the_manifest_changes_and_callers_get_their_own_lists(tmp_path: Path) -> None:
    config = load_site_config(make_site(tmp_path, "a", n=10))
    cases, splits = read_cases(config)
    cases.clear()
    splits.clear()
    again, again_splits = read_cases(config)
    assert len(again) == 10 and len(again_splits) == 10  # the caller's edits did not reach the kept copy
    with config.data.manifest.open() as handle:
        rows = list(csv.DictReader(handle))
    with config.data.manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[:8])
    stat = config.data.manifest.stat()
    os.utime(config.data.manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert [c.case_id for c in read_cases(config)[0]] == [r["case_id"] for r in rows[:8]]
