"""``astroreco tpc simulate`` end to end, and bad input."""

from __future__ import annotations

import json

from clirun import assert_user_error, run


def test_simulate(tmp_path):
    out = tmp_path / "ev.h5"
    summary = json.loads(run(["tpc", "simulate", "-o", out, "-n", 6, "--energy", "40",
                              "--sigma", "443", "--seed", 2, "-q"]).output)
    assert summary["n_stored"] == 6 and summary["containment"] == 1.0
    assert 4.0 < summary["mean_length_cm"] < 6.0
    assert_user_error(run(["tpc", "simulate", "-o", out, "-n", 6, "-q"], ok=False),
                      "file exists")
    assert_user_error(run(["tpc", "simulate", "-o", tmp_path / "x.h5", "-n", 6, "--sigma",
                           "a", "-q"], ok=False), "--sigma 'a'")
    assert_user_error(run(["tpc", "simulate", "-o", tmp_path / "x.h5", "-n", 0, "-q"],
                          ok=False), "--n-events")
