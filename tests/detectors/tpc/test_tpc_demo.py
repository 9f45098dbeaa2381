"""The TPC part of the demo writes its summary and plot."""

from __future__ import annotations

import json

from astroreco.detectors.tpc import demo


def test_demo_writes_summary_and_plot(tmp_path):
    summary = demo.run(tmp_path, n_events=20, seed=1, progress=False)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert [r["set"] for r in summary["rows"]] == ["40kev_443um", "50kev_200um"]
    assert summary["rows"][0]["containment"] == 1.0
    assert (tmp_path / "tracks.png").stat().st_size > 10_000
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind
