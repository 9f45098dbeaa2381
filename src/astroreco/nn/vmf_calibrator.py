"""A learned recalibration of von Mises-Fisher concentrations.

A network trained with a heteroscedastic vMF likelihood ranks its events, but its ``kappa``
is often off in ways a single scale or power cannot mend: it depends on how the test
conditions (energy, diffusion) differ from the training mix, and on what the test-time
passes agree on.  :func:`fit_vmf_calibrator` fits, on validation events never used for
training or testing, a small ensemble of multilayer perceptrons that map per-event measured
quantities (the network's own ``log kappa`` among them) to ``log kappa``, by the same vMF
negative log-likelihood (:class:`~astroreco.losses.VonMisesFisherLoss`) with the predicted
directions held fixed.  Within any group of events the likelihood is maximal where
``A_3(kappa) = mean cos theta``, which is what the calibration test fits, so a flexible map
fitted on enough events is calibrated conditionally on its inputs.

The fitted map is plain JSON (:func:`check_vmf_calibrator`) and is applied with numpy
(:func:`apply_vmf_calibrator`): no code is loaded with a model.  Nothing here knows a
detector; the detector package chooses the features.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from astroreco.errors import InputError

#: the ``kind`` of a map made here
KIND = "mlp"
#: log kappa is predicted around this offset (kappa ~ 27), bounded to [LOG_KAPPA_MIN, MAX].
#: The bound is a hard clamp, so a member pushed below the floor gets no gradient from that
#: event; without it the gradient would be no larger: the vMF likelihood's own derivative
#: in log kappa is kappa (cos theta - A_3(kappa)), at most exp(LOG_KAPPA_MIN) = 0.0067 there.
LOG_KAPPA_OFFSET = 3.3
LOG_KAPPA_MIN, LOG_KAPPA_MAX = -5.0, 8.0


def _as_features(features, names, where: str) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[1] != len(names):
        raise InputError(f"{where}: expected features of shape (n, {len(names)}) for "
                         f"{list(names)}, got {f.shape}")
    if not np.all(np.isfinite(f)):
        bad = [n for n, ok in zip(names, np.isfinite(f).all(0)) if not ok]
        raise InputError(f"{where}: non-finite values in features {bad}")
    return f


def _mlp(n_in: int, hidden: int, depth: int) -> torch.nn.Sequential:
    layers, width = [], n_in
    for _ in range(depth):
        layers += [torch.nn.Linear(width, hidden), torch.nn.SiLU()]
        width = hidden
    layers.append(torch.nn.Linear(width, 1))
    return torch.nn.Sequential(*layers)


def _log_kappa(raw: torch.Tensor) -> torch.Tensor:
    return torch.clamp(raw[:, 0] + LOG_KAPPA_OFFSET, LOG_KAPPA_MIN, LOG_KAPPA_MAX)


def balance_weights(values, power: float, n_bins: int = 40) -> np.ndarray:
    """Per-event weights ``(max density / density)^power`` of a histogram of ``values``
    (``n_bins`` equal-width bins), normalised to mean 1: ``power = 0`` weighs every event
    alike, ``power = 1`` every bin of ``values`` alike."""
    v = np.asarray(values, np.float64)
    if v.ndim != 1 or v.size == 0 or not np.all(np.isfinite(v)):
        raise InputError("balance: expected a non-empty 1D array of finite values")
    if not (math.isfinite(power) and power >= 0):
        raise InputError(f"balance: expected a power >= 0, got {power!r}")
    if power == 0 or v.min() == v.max():
        return np.ones(v.size)
    counts, edges = np.histogram(v, bins=int(n_bins))
    density = counts[np.clip(np.searchsorted(edges, v, side="right") - 1, 0, n_bins - 1)]
    w = (counts.max() / density.astype(np.float64)) ** float(power)
    return w / w.mean()


def fit_vmf_calibrator(features, direction, truth, names, *, members: int = 5,
                       hidden: int = 32, depth: int = 2, val_fraction: float = 0.15,
                       lr: float = 3e-3, weight_decay: float = 1e-4, batch_size: int = 1024,
                       max_epochs: int = 300, patience: int = 25, seed: int = 0,
                       balance: float = 0.0, balance_by: str | None = None,
                       progress: bool = True) -> dict:
    """Fit the ensemble on validation events; returns the JSON-ready map.

    Parameters
    ----------
    features : array_like
        ``(n, m)`` per-event measured quantities, columns named by ``names``.
    direction, truth : array_like
        ``(n, 3)`` predicted and true directions (the predictions are kept as they are).
    names : sequence of str
        The feature names, stored with the map so that it is applied to the same columns.
    members : int
        Networks in the ensemble, each with its own random split of the events into
        training and early-stopping parts (``val_fraction``) and its own initialisation;
        the map's ``log kappa`` is their mean.
    hidden, depth : int
        Width and number of hidden layers (SiLU) of each network.
    lr, weight_decay, batch_size, max_epochs, patience : optional
        AdamW settings; training stops when the held-out likelihood has not improved for
        ``patience`` epochs, and the best epoch is kept.
    seed : int
        Seed of the splits, initialisations and batch orders.
    balance, balance_by : float, str
        Weigh each event's likelihood by :func:`balance_weights` of the feature
        ``balance_by`` (default: the first) with this power, in training and early stopping
        alike.  The rare events -- in a tail of the network's own ``kappa``, say -- then
        count for more than their number, and the map is fitted there too instead of
        being set by the bulk; ``0`` (default) weighs every event alike.

    Returns
    -------
    dict
        ``kind``, ``features``, ``mean``, ``std`` (standardisation), ``hidden``, ``depth``,
        ``members`` (per member its layers as ``[weight, bias]`` lists), ``fit`` (events,
        held-out NLL and best epoch per member).
    """
    from astroreco.losses import VonMisesFisherLoss
    from astroreco.progress import progress_bar

    names = [str(n) for n in names]
    f = _as_features(features, names, "vmf calibrator")
    d = np.asarray(direction, np.float64)
    t = np.asarray(truth, np.float64)
    if d.shape != (len(f), 3) or t.shape != (len(f), 3):
        raise InputError(f"vmf calibrator: expected directions and truth of shape "
                         f"({len(f)}, 3), got {d.shape} and {t.shape}")
    for name, value in (("members", members), ("hidden", hidden), ("depth", depth),
                        ("batch_size", batch_size), ("max_epochs", max_epochs),
                        ("patience", patience)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise InputError(f"{name}: expected an integer >= 1, got {value!r}")
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val_fraction: expected a number in (0, 1), got {val_fraction!r}")
    n_val = int(round(val_fraction * len(f)))
    if n_val < 50 or len(f) - n_val < 200:
        raise InputError(f"vmf calibrator: {len(f)} events, expected enough for >= 200 "
                         f"training and >= 50 held-out events")
    by = names[0] if balance_by is None else str(balance_by)
    if by not in names:
        raise InputError(f"balance_by {by!r}: expected one of the features {names}")
    weight = torch.tensor(balance_weights(f[:, names.index(by)], float(balance)),
                          dtype=torch.float32)
    mean, std = f.mean(0), f.std(0)
    std = np.where(std > 0, std, 1.0)
    x_all = torch.tensor((f - mean) / std, dtype=torch.float32)
    d_all = torch.tensor(d, dtype=torch.float32)
    t_all = torch.tensor(t, dtype=torch.float32)
    loss_fn = VonMisesFisherLoss()
    gen = torch.Generator().manual_seed(int(seed))
    out, fits = [], []
    with progress_bar(f"fitting the kappa map ({members} networks, {len(f)} events)",
                      total=int(members), enabled=progress) as bar:
        for m in range(int(members)):
            torch.manual_seed(int(seed) * 1000 + m)
            perm = torch.randperm(len(f), generator=gen)
            va, tr = perm[:n_val], perm[n_val:]
            net = _mlp(f.shape[1], int(hidden), int(depth))
            opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)

            def nll(idx):
                k = torch.exp(_log_kappa(net(x_all[idx])))
                return loss_fn((d_all[idx], k), t_all[idx], weight[idx])

            best, best_state, best_epoch = math.inf, None, -1
            for epoch in range(int(max_epochs)):
                net.train()
                order = tr[torch.randperm(len(tr), generator=gen)]
                for s in range(0, len(order), int(batch_size)):
                    opt.zero_grad()
                    nll(order[s:s + int(batch_size)]).backward()
                    opt.step()
                net.eval()
                with torch.no_grad():
                    v = float(nll(va))
                if v < best - 1e-6:
                    best, best_epoch = v, epoch
                    best_state = {k: p.detach().clone() for k, p in net.state_dict().items()}
                elif epoch - best_epoch >= int(patience):
                    break
            net.load_state_dict(best_state)
            linears = [mod for mod in net if isinstance(mod, torch.nn.Linear)]
            out.append([[mod.weight.detach().double().tolist(),
                         mod.bias.detach().double().tolist()] for mod in linears])
            fits.append({"held_out_nll": best, "best_epoch": best_epoch})
            bar.advance(1)
    return {"kind": KIND, "features": names, "mean": [float(v) for v in mean],
            "std": [float(v) for v in std], "hidden": int(hidden), "depth": int(depth),
            "members": out, "fit": {"events": int(len(f)), "members": fits,
                                    "balance": float(balance), "balance_by": by}}


def check_vmf_calibrator(params) -> dict:
    """``params`` (a map from :func:`fit_vmf_calibrator`, e.g. read from a model's JSON)
    checked for shape and finiteness; raises :class:`~astroreco.errors.InputError` naming
    what is wrong."""
    where = "kappa_calibration"
    try:
        if params.get("kind") != KIND:
            raise InputError(f"{where}: expected kind {KIND!r}, got {params.get('kind')!r}")
        names = [str(n) for n in params["features"]]
        mean = np.asarray(params["mean"], np.float64)
        std = np.asarray(params["std"], np.float64)
        hidden, depth = int(params["hidden"]), int(params["depth"])
        members = [[(np.asarray(w, np.float64), np.asarray(b, np.float64)) for w, b in layers]
                   for layers in params["members"]]
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InputError(f"{where}: expected 'kind', 'features', 'mean', 'std', 'hidden', "
                         "'depth' and 'members' (per member a list of [weight, bias])") \
            from None
    m = len(names)
    if m == 0 or mean.shape != (m,) or std.shape != (m,) or not members:
        raise InputError(f"{where}: expected {m} > 0 feature means and widths, and at least "
                         "one member")
    widths = [m] + [hidden] * depth + [1]
    for layers in members:
        if len(layers) != depth + 1 or any(
                w.shape != (widths[i + 1], widths[i]) or b.shape != (widths[i + 1],)
                for i, (w, b) in enumerate(layers)):
            raise InputError(f"{where}: expected per member {depth + 1} layers of widths "
                             f"{widths}")
    flat = [mean, std] + [a for layers in members for pair in layers for a in pair]
    if not all(np.all(np.isfinite(a)) for a in flat) or np.any(std <= 0):
        raise InputError(f"{where}: expected finite values and feature widths > 0")
    return {**params, "features": names}


def apply_vmf_calibrator(params, features) -> np.ndarray:
    """``kappa`` of the map ``params`` for ``(n, m)`` ``features`` (columns in the order of
    ``params['features']``): the exponential of the members' mean ``log kappa``."""
    names = params["features"]
    f = _as_features(features, names, "kappa_calibration")
    x = (f - np.asarray(params["mean"])) / np.asarray(params["std"])
    total = np.zeros(len(f))
    for layers in params["members"]:
        h = x
        for i, (w, b) in enumerate(layers):
            h = h @ np.asarray(w).T + np.asarray(b)
            if i < len(layers) - 1:
                h = h / (1.0 + np.exp(-np.clip(h, -700.0, 700.0)))  # SiLU
        total += np.clip(h[:, 0] + LOG_KAPPA_OFFSET, LOG_KAPPA_MIN, LOG_KAPPA_MAX)
    return np.exp(total / len(params["members"]))
