"""The sky part of the demo: IEM-B patches scored with sep and the shipped U-Net side by
side, with the plots and the report."""

from __future__ import annotations

import json
from pathlib import Path

from astroreco.detectors.sky import demo


def test_demo_writes_summary_evaluation_and_plots(tmp_path):
    summary = demo.run(tmp_path, n_patches=12, seed=1, progress=False)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary, default=float))
    assert summary["iem"] == "B" and summary["n_patches"] == 12
    assert set(summary["methods"]) == {"sep", "sep_iem_a", "nn"}  # shipped detector scored
    assert summary["network"] == "scored" and summary["nn_patches_per_second"] > 0
    for m in summary["methods"].values():
        assert m["n_detections"] > 0 and 0 < m["purity"] <= 1
    assert "| sep |" in summary["table"] and "| nn |" in summary["table"]
    assert summary["refiner"] and summary["methods"]["nn"]["position_pull_std"] > 0
    for png in summary["plots"]:
        assert Path(png).stat().st_size > 10_000
    assert Path(summary["report"]).is_file()
    assert not list(tmp_path.rglob(".*"))  # no temporary files left behind
