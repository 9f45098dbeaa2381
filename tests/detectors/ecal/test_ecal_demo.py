"""The ECAL part of the demo: electrons, positrons and the detector variant, each scored with
the centre of gravity, the neighbour-cell ratio and the shipped network on the same
showers, with the plots."""

from __future__ import annotations

import json
from pathlib import Path

from astroreco.detectors.ecal import demo


def test_demo_writes_summary_evaluation_and_plots(tmp_path):
    summary = demo.run(tmp_path, n_events=400, seed=1, progress=False)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary, default=float))
    assert [r["set"] for r in summary["rows"]] == ["electrons", "positrons",
                                                   "electrons_variant"]
    for row in summary["rows"]:
        assert {"cog", "cell_ratio"} <= set(row["resolution"])
        assert "nn" in row["resolution"]      # the shipped network is scored
        assert "centre of gravity" in row["table"] and "neighbour-cell ratio" in row["table"]
        for png in row["plots"]:
            assert Path(png).stat().st_size > 10_000
    assert summary["network"] == "scored"
    assert (tmp_path / "showers.png").stat().st_size > 10_000
    assert not list(tmp_path.rglob(".*"))  # no temporary files left behind
