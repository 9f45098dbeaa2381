"""The TPC part of the demo: simulation, the classical references and the shipped HCN,
scored on the same events, with the plots."""

from __future__ import annotations

import json
from pathlib import Path

from astroreco.detectors.tpc import demo


def test_demo_writes_summary_evaluation_and_plots(tmp_path):
    summary = demo.run(tmp_path, n_events=30, seed=1, progress=False)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert [r["set"] for r in summary["rows"]] == ["40kev_443um", "50kev_200um"]
    assert summary["rows"][0]["containment"] == 1.0
    for row in summary["rows"]:
        assert set(row["cos_dist"]) == {"nonml", "best_expected", "hcn"}
        assert all(0 <= v <= 2 for v in row["cos_dist"].values())
        assert row["efficiency"]["hcn"] == 1.0
        assert len(row["plots"]) == 2
        for png in row["plots"]:
            assert Path(png).parent.parent == tmp_path and Path(png).stat().st_size > 10_000
    assert (tmp_path / "tracks.png").stat().st_size > 10_000
    assert not list(tmp_path.rglob(".*"))  # no temporary files left behind
