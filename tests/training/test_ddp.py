"""fit with devices=2 on the CPU: a real two-process DDP run (gloo), in a subprocess.

Lightning's ``ddp`` launcher re-runs ``sys.argv``, which inside pytest would be pytest
itself, so the run is a small script written to tmp_path; ``ddp_spawn`` runs the same script
(its workers are spawned from the script's process).  A hang fails on the timeout.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
N_TRAIN, CHUNK, BATCH, EPOCHS = 201, 67, 16, 2  # odd sizes: 3 odd chunks, one row left out
QUOTA = N_TRAIN // 2
LOADS = -(-N_TRAIN // CHUNK)  # chunks per epoch, each giving rows to both ranks
STEPS = QUOTA // BATCH
TIMEOUT = 120  # s

SCRIPT = """
import json, os, sys
import torch
from linear_problem import MODEL_CONFIG, LinearSource, build_model, predict, task_loss
from astroreco.training import OptimConfig, TrainConfig, fit

if __name__ == "__main__":
    out, record, strategy = sys.argv[1:4]
    config = TrainConfig(max_epochs={epochs}, batch_size={batch}, chunk_size={chunk},
                         patience=5, progress=False, threads=1, devices=2,
                         strategy=strategy, optim=OptimConfig(lr=2e-2, warmup_steps=2))
    result = fit(build_model(), task_loss(), LinearSource({n_train}, record=record),
                 LinearSource(41, offset=10_000), out, config=config,
                 model_config=MODEL_CONFIG)
    mean, log_var = predict(result.model)
    weights_finite = all(bool(torch.isfinite(v).all())
                         for v in result.model.state_dict().values())
    summary = dict(epochs=result.epochs, steps=result.steps,
                   best_val_loss=result.best_val_loss, is_global_zero=result.is_global_zero,
                   checkpoint=result.checkpoint, history=len(result.history),
                   finite=weights_finite and bool(torch.isfinite(mean).all())
                   and bool(torch.isfinite(log_var).all()),
                   local_rank=os.environ.get("LOCAL_RANK"),
                   group_released=not torch.distributed.is_initialized())
    name = "result.json" if result.is_global_zero else f"result-{{os.getpid()}}.json"
    with open(os.path.join(out, name), "w") as fh:
        json.dump(summary, fh)
"""


def _run(tmp_path: Path, strategy: str):
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(SCRIPT).format(epochs=EPOCHS, batch=BATCH, chunk=CHUNK,
                                                     n_train=N_TRAIN))
    out, record = tmp_path / "run", tmp_path / "rows"
    out.mkdir()
    record.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(HERE)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    for var in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR",
                "MASTER_PORT"):
        env.pop(var, None)
    env["CUDA_VISIBLE_DEVICES"] = ""
    # its own session, so that a hang can be ended with every process of the run
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(record), strategy],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:  # a DDP hang: fail, do not block
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"DDP run did not finish in {TIMEOUT} s: {output[-3000:]}")
    assert proc.returncode == 0, output[-5000:]
    return out, record


@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn"])
def test_two_process_cpu_ddp(tmp_path, strategy):
    out, record = _run(tmp_path, strategy)

    # two processes, both inside a world of size 2
    files = sorted(record.glob("rows-*.txt"))
    assert [f.name.split("-")[1:3] for f in files] == [["0", "2"], ["1", "2"]], files
    assert len({f.name.split("-")[3] for f in files}) == 2  # two pids

    loads = {int(f.name.split("-")[1]): [list(map(int, line.split()))
                                         for line in f.read_text().splitlines()]
             for f in files}
    for rank in (0, 1):
        assert len(loads[rank]) == EPOCHS * LOADS
    epochs = {rank: [sum(loads[rank][e * LOADS:(e + 1) * LOADS], []) for e in range(EPOCHS)]
              for rank in (0, 1)}
    for e in range(EPOCHS):
        a, b = epochs[0][e], epochs[1][e]
        assert len(a) == len(set(a)) == QUOTA and len(b) == len(set(b)) == QUOTA
        assert not set(a) & set(b)  # each rank saw its own rows
        assert set(a) | set(b) <= set(range(N_TRAIN))
    for rank in (0, 1):  # reshuffled between epochs
        assert epochs[rank][0] != epochs[rank][1]

    result = json.loads((out / "result.json").read_text())
    assert result["is_global_zero"]
    assert result["epochs"] == EPOCHS
    assert result["steps"] == EPOCHS * STEPS  # per-rank batches: both ranks stayed in step
    assert math.isfinite(result["best_val_loss"])
    assert result["finite"]
    assert result["history"] == EPOCHS
    assert Path(result["checkpoint"]) == out / "checkpoints" / "best.ckpt"
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert (out / "logs" / "metrics.csv").is_file()
    assert result["group_released"]  # fit ends the gloo group (a live one can abort at exit)
    if strategy == "ddp":  # the relaunched rank 1 runs the script too and agrees
        (other,) = out.glob("result-*.json")
        rank1 = json.loads(other.read_text())
        assert not rank1["is_global_zero"] and rank1["local_rank"] == "1"
        assert rank1["steps"] == result["steps"] and rank1["finite"]
        assert rank1["group_released"]
        assert rank1["best_val_loss"] == pytest.approx(result["best_val_loss"])
    else:  # spawned workers return to the script's process, which reports for rank 0
        assert not list(out.glob("result-*.json"))
