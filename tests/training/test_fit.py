"""fit: a tiny regression trained end to end, run directories, resuming, schedules, errors."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from linear_problem import MODEL_CONFIG, LinearSource, build_model, predict, task_loss

from astroreco.errors import InputError
from astroreco.io.modeldir import load_model_dir, load_state, save_model_dir
from astroreco.training import OptimConfig, TrainConfig, fit
from astroreco.training.module import CHECKPOINT_FORMAT, lr_factor

HERE = Path(__file__).resolve().parent
N_TRAIN, N_VAL, BATCH = 256, 64, 32
STEPS = N_TRAIN // BATCH  # optimiser steps per epoch


@pytest.fixture(autouse=True)
def _keep_threads():
    """fit(threads=1) sets torch's thread count for the process: put it back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _config(**kw) -> TrainConfig:
    optim = kw.pop("optim", OptimConfig(lr=2e-2, warmup_steps=4))
    base = dict(max_epochs=3, batch_size=BATCH, chunk_size=64, patience=5, progress=False,
                threads=1, optim=optim)
    return TrainConfig(**{**base, **kw})


def _fit(out, *, train=None, model=None, loss=None, **kw):
    kw.setdefault("config", _config())
    kw.setdefault("model_config", MODEL_CONFIG)
    return fit(model or build_model(), loss or task_loss(), train or LinearSource(N_TRAIN),
               LinearSource(N_VAL, offset=10_000), out, **kw)


def _ckpt(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module, atol=1e-6) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.allclose(sa[k], sb[k], atol=atol) for k in sa)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 3-epoch run whose training source records the rows of every load."""
    root = tmp_path_factory.mktemp("fit")
    record = root / "rows"
    record.mkdir()
    result = _fit(root / "run", train=LinearSource(N_TRAIN, record=str(record)))
    return root / "run", record, result


# --- a complete run ---------------------------------------------------------------------

def test_fit_learns_and_reports(trained):
    out, _, result = trained
    assert result.is_global_zero
    assert result.epochs == 3
    assert result.steps == 3 * STEPS
    assert result.seconds > 0
    assert [h["epoch"] for h in result.history] == [0, 1, 2]
    val = [h["val_loss"] for h in result.history]
    assert all(math.isfinite(v) for v in val)
    assert val[-1] < val[0]
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    assert math.isfinite(result.best_val_loss)
    assert result.best_val_loss == pytest.approx(min(val), rel=1e-6)
    # the returned model holds the best checkpoint's weights, on the CPU, in eval mode
    assert result.checkpoint == str(out / "checkpoints" / "best.ckpt")
    assert not result.model.training
    best = {k[len("model."):]: v for k, v in _ckpt(result.checkpoint)["state_dict"].items()
            if k.startswith("model.")}
    own = result.model.state_dict()
    assert best.keys() == own.keys() and all(torch.equal(best[k], own[k]) for k in own)
    mean, log_var = predict(result.model)
    assert torch.isfinite(mean).all() and torch.isfinite(log_var).all()


def test_run_directory_layout(trained):
    out, _, _ = trained
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert (out / "checkpoints" / "best.ckpt").is_file()
    with open(out / "logs" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {"epoch", "val_loss", "train_loss"} <= set(rows[0])
    assert sorted({int(float(r["epoch"])) for r in rows}) == [0, 1, 2]
    last = _ckpt(out / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 2 and last["global_step"] == 3 * STEPS
    meta = last["astroreco"]
    assert meta["format"] == CHECKPOINT_FORMAT
    assert meta["model_config"] == MODEL_CONFIG
    assert meta["optim"]["lr"] == pytest.approx(2e-2)


def test_each_epoch_streams_a_new_order_of_the_same_rows(trained):
    _, record, _ = trained
    (path,) = record.glob("rows-0-1-*.txt")
    loads = [line.split() for line in path.read_text().splitlines()]
    per_epoch = N_TRAIN // 64  # loads (chunks) per epoch
    assert len(loads) == 3 * per_epoch
    epochs = [sum(loads[i * per_epoch:(i + 1) * per_epoch], []) for i in range(3)]
    for rows in epochs:
        assert sorted(map(int, rows)) == list(range(N_TRAIN))
    assert epochs[0] != epochs[1] != epochs[2]


def test_model_directory_round_trip_predicts_identically(trained, tmp_path):
    _, _, result = trained
    card = "# toy model\n\nlinear regression\n"
    save_model_dir(tmp_path / "model", result.model.state_dict(), MODEL_CONFIG, card)
    state, config = load_model_dir(tmp_path / "model", detector="toy")
    assert {k: config[k] for k in MODEL_CONFIG} == MODEL_CONFIG
    fresh = build_model(seed=123)
    assert not _same_weights(fresh, result.model)
    load_state(fresh, state, tmp_path / "model")
    fresh.eval()
    for a, b in zip(predict(result.model), predict(fresh)):
        assert torch.equal(a, b)


# --- resuming ---------------------------------------------------------------------------

def test_resume_continues_where_the_last_run_stopped(tmp_path):
    constant = OptimConfig(lr=2e-2, warmup_steps=4, schedule="constant")
    first = _fit(tmp_path / "run", config=_config(max_epochs=1, optim=constant))
    assert (first.epochs, first.steps) == (1, STEPS)
    again = _fit(tmp_path / "run", config=_config(max_epochs=2, optim=constant), resume=True)
    assert (again.epochs, again.steps) == (2, 2 * STEPS)
    # the first run's epoch is kept in the log and the history
    assert [h["epoch"] for h in again.history] == [0, 1]
    assert again.history[0]["val_loss"] == pytest.approx(first.history[0]["val_loss"])
    assert not (tmp_path / "run" / "logs" / "metrics-before-resume.csv").exists()
    # ... and it ends where an uninterrupted run ends (optimiser state and data order)
    straight = _fit(tmp_path / "straight", config=_config(max_epochs=2, optim=constant))
    assert straight.steps == again.steps
    assert _same_weights(again.model, straight.model, atol=1e-5)


def test_resume_without_checkpoint_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no checkpoint to resume from"):
        _fit(tmp_path / "run", resume=True)


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    _fit(tmp_path / "run", config=_config(max_epochs=1))
    with pytest.raises(InputError, match="earlier run"):
        _fit(tmp_path / "run", config=_config(max_epochs=1))
    # bad inputs are reported before the earlier run is deleted
    with pytest.raises(InputError, match="fewer than one batch"):
        _fit(tmp_path / "run", config=_config(max_epochs=1), overwrite=True,
             train=LinearSource(BATCH - 1))
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "run" / "logs" / "metrics.csv").is_file()
    again = _fit(tmp_path / "run", config=_config(max_epochs=1), overwrite=True)
    assert (again.epochs, again.steps) == (1, STEPS)
    assert [h["epoch"] for h in again.history] == [0]


def _edit_last(out: Path, edit) -> None:
    path = out / "checkpoints" / "last.ckpt"
    ckpt = _ckpt(path)
    edit(ckpt)
    torch.save(ckpt, path)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.pop("astroreco"), "found none"),
    (lambda c: c["astroreco"].update(format=99), "found 99"),
    (lambda c: c["astroreco"].update(model_config={"detector": "toy", "features": 16}),
     "different model configuration"),
])
def test_resume_rejects_foreign_checkpoints(tmp_path, edit, message):
    out = tmp_path / "run"
    _fit(out, config=_config(max_epochs=1))
    _edit_last(out, edit)
    with pytest.raises(InputError, match=message):
        _fit(out, config=_config(max_epochs=2), resume=True)
    # the earlier epochs' log survives the failed attempt
    with open(out / "logs" / "metrics.csv", newline="") as fh:
        assert {int(float(r["epoch"])) for r in csv.DictReader(fh)} == {0}


def test_resume_with_another_model_config_is_an_input_error(tmp_path):
    _fit(tmp_path / "run", config=_config(max_epochs=1))
    with pytest.raises(InputError, match="different model configuration"):
        _fit(tmp_path / "run", config=_config(max_epochs=2), resume=True,
             model_config={**MODEL_CONFIG, "features": 16})


KILLED_RUN = """
import sys
from linear_problem import MODEL_CONFIG, LinearSource, build_model, task_loss
from astroreco.training import OptimConfig, TrainConfig, fit

config = TrainConfig(max_epochs=2, batch_size={batch}, chunk_size=64, patience=5,
                     progress=False, threads=1, optim=OptimConfig(lr=2e-2, warmup_steps=4))
# {per_epoch} loads per epoch: the process dies at the start of epoch 2's third chunk
fit(build_model(), task_loss(), LinearSource({n_train}, exit_after={per_epoch} + 2),
    LinearSource({n_val}, offset=10_000), sys.argv[1], config=config,
    model_config=MODEL_CONFIG)
print("not killed")
"""


def test_run_killed_mid_epoch_resumes_from_the_last_complete_epoch(tmp_path):
    script = tmp_path / "killed_run.py"
    script.write_text(textwrap.dedent(KILLED_RUN).format(
        batch=BATCH, n_train=N_TRAIN, n_val=N_VAL, per_epoch=N_TRAIN // 64))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(HERE)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(script), str(out)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "not killed" not in proc.stdout
    last = _ckpt(out / "checkpoints" / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (0, STEPS)  # end of epoch 1

    resumed = _fit(out, config=_config(max_epochs=2), resume=True)
    assert (resumed.epochs, resumed.steps) == (2, 2 * STEPS)
    assert [h["epoch"] for h in resumed.history] == [0, 1]
    # what an uninterrupted run gives: epoch 1's checkpoint (weights, optimiser, schedule)
    # was used and only the killed epoch was redone
    straight = _fit(tmp_path / "straight", config=_config(max_epochs=2))
    assert straight.steps == resumed.steps
    assert _same_weights(resumed.model, straight.model, atol=1e-5)
    for a, b in zip(resumed.history, straight.history):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)


# --- errors -------------------------------------------------------------------------------

class NaNLoss(torch.nn.Module):
    def forward(self, outputs, batch):
        mean, _ = outputs["y"]
        loss = (mean * float("nan")).sum()
        return {"loss": loss}


def test_nan_loss_raises_floating_point_error(tmp_path):
    with pytest.raises(FloatingPointError, match=r"training loss became nan at step 0.*"
                                                 "learning rate"):
        _fit(tmp_path / "run", loss=NaNLoss())


def test_too_few_events_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="fewer than one batch"):
        fit(build_model(), task_loss(), LinearSource(BATCH - 1), LinearSource(8), tmp_path,
            config=_config())
    # with 2 processes each rank reads half the events: no full batch per rank
    with pytest.raises(InputError, match="per device"):
        fit(build_model(), task_loss(), LinearSource(BATCH + 8), LinearSource(8), tmp_path,
            config=_config(devices=2))
    with pytest.raises(InputError, match="validation set"):
        fit(build_model(), task_loss(), LinearSource(N_TRAIN), LinearSource(0), tmp_path,
            config=_config())
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("kw", [dict(max_epochs=0), dict(batch_size=0), dict(devices=0),
                                dict(accelerator="tpu")])
def test_train_config_validation(kw):
    with pytest.raises(InputError):
        _config(**kw)


def test_train_config_accepts_optim_dict():
    config = TrainConfig(optim={"lr": 1e-3, "schedule": "step"})
    assert isinstance(config.optim, OptimConfig) and config.optim.schedule == "step"
    assert config.to_dict()["optim"]["lr"] == 1e-3


@pytest.mark.parametrize("kw", [dict(schedule="linear"), dict(lr=0.0), dict(lr=-1.0),
                                dict(betas=(0.9, 1.0)), dict(betas=(0.9,)), dict(eps=0.0)])
def test_optim_config_validation(kw):
    with pytest.raises(InputError):
        OptimConfig(**kw)


def test_adam_gets_the_configured_betas_and_eps():
    from astroreco.training.module import ReconstructionModule

    optim = OptimConfig(lr=1e-4, betas=(0.94, 0.999), eps=1e-7)
    module = ReconstructionModule(torch.nn.Linear(2, 1), None, optim=optim, steps_per_epoch=1,
                                  max_epochs=1)
    opt = module.configure_optimizers()["optimizer"]
    group = opt.param_groups[0]
    assert group["betas"] == (0.94, 0.999) and group["eps"] == 1e-7 and group["initial_lr"] == 1e-4
    assert TrainConfig(optim=optim).to_dict()["optim"]["betas"] == (0.94, 0.999)


# --- the learning-rate schedule ---------------------------------------------------------

def test_lr_warmup_ramps_linearly_to_one():
    cfg = OptimConfig(schedule="constant", warmup_steps=10)
    f = [lr_factor(s, 100, 5, cfg) for s in range(15)]
    assert f[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert f[9:] == pytest.approx([1.0] * 6)
    assert lr_factor(0, 100, 5, OptimConfig(schedule="constant", warmup_steps=0)) == 1.0


def test_lr_cosine_decays_to_final_fraction():
    cfg = OptimConfig(schedule="cosine", warmup_steps=0, final_fraction=0.05)
    spe, epochs = 20, 4
    f = [lr_factor(s, spe, epochs, cfg) for s in range(spe * epochs + 1)]
    assert f[0] == pytest.approx(1.0)
    assert f[spe * epochs // 2] == pytest.approx(0.05 + 0.95 * 0.5)
    assert f[-1] == pytest.approx(0.05)
    assert all(a >= b for a, b in zip(f, f[1:]))
    assert lr_factor(10 * spe * epochs, spe, epochs, cfg) == pytest.approx(0.05)
    # warm-up multiplies the schedule
    warm = OptimConfig(schedule="cosine", warmup_steps=40, final_fraction=0.05)
    assert lr_factor(19, spe, epochs, warm) == pytest.approx(0.5 * f[19])


def test_lr_step_decays_by_gamma_every_step_epochs():
    cfg = OptimConfig(schedule="step", warmup_steps=0, step_epochs=2, gamma=0.5)
    spe = 10
    assert [lr_factor(e * spe, spe, 10, cfg) for e in range(7)] == pytest.approx(
        [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125])
    assert lr_factor(2 * spe - 1, spe, 10, cfg) == 1.0


def test_scheduler_applies_the_factor_to_the_optimiser(tmp_path):
    """The trainer steps the schedule per optimiser step: lr after the run = factor(steps)."""
    optim = OptimConfig(lr=1e-2, warmup_steps=3, schedule="step", step_epochs=1, gamma=0.5)
    result = _fit(tmp_path / "run", config=_config(max_epochs=2, optim=optim))
    last = _ckpt(tmp_path / "run" / "checkpoints" / "last.ckpt")
    (group,) = last["optimizer_states"][0]["param_groups"]
    expected = 1e-2 * lr_factor(result.steps, STEPS, 2, optim)
    assert group["lr"] == pytest.approx(expected)
    assert expected == pytest.approx(1e-2 * 0.25)
