"""Monte Carlo of the Gas Pixel Detector: from the X-ray photon to zero-suppressed pixels.

Per event (all compiled, per-event random streams, see :mod:`astroreco.rng`):

1. photon energy from the source spectrum; absorption depth in the gap from the gas
   photoabsorption coefficient (truncated exponential); impact point in the beam spot;
2. absorbing element in proportion to its photoabsorption; photoelectron energy E - E_K;
3. photoelectron direction from the K-shell cross-section
   ``dsigma/dOmega ~ sin^2(theta) [1 + P cos 2(phi - phi0)] / (1 - beta cos theta)^4``,
   theta measured from the photon direction (the detector normal, -z);
4. transport of the photoelectron (and of the Auger electron, emitted isotropically
   unless the vacancy decays by fluorescence, whose photon escapes) with the shared engine
   :mod:`astroreco.physics.transport`; ionisation electrons with W and Fano;
5. drift to the GEM with diffusion ~ sqrt(drift length); each primary enters the nearest GEM
   hole (triangular lattice, 50 um pitch) and is multiplied with exponential/Polya gain
   fluctuations; the avalanche spreads over the pixels by the transfer-gap diffusion;
6. electronic noise (ENC) on every pixel of the read-out window, zero suppression, trigger
   on the summed charge, read-out window = bounding box of the track padded by 8 columns and
   10 rows.

Coordinates: x, y in mm in the readout plane (y up, the frame of
:mod:`astroreco.detectors.ixpe.geometry`), z = height above the GEM (the drift length) in mm.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numba
import numpy as np

from astroreco import rng
from astroreco.detectors.ixpe.geometry import IXPE_GRID, HexGrid, nearest_pixel
from astroreco.detectors.ixpe.photoabsorption import (lin, photo_tables, sample_cos_theta,
                                                     sample_energy, sample_phi)
from astroreco.detectors.ixpe.source import EnergySpectrum, SourceConfig  # noqa: F401
from astroreco.errors import InputError
from astroreco.physics.gas import Gas, dme
from astroreco.physics.transport import TransportTables, local_deposit, place_electrons, \
    transport, n_ionisation_electrons

_HALF = 96                      # local image half-size (pixels) around the absorption point
_GEM_PITCH_CM = 0.005
_GEM_OFFSET_CM = (0.00123, 0.00071)


@dataclass(frozen=True)
class GpdConfig:
    """Detector parameters of the Gas Pixel Detector (defaults: IXPE, PHYSICS.md)."""

    pressure_mbar: float = 800.0
    temperature_c: float = 20.0
    gap_mm: float = 10.0
    diffusion_um_sqrt_cm: float = 68.0
    transfer_gap_mm: float = 0.775
    transfer_diffusion_um_sqrt_cm: float = 142.0
    gem_gain: float = 190.0
    polya_theta: float = 0.0          # 0: exponential gain fluctuations
    noise_enc: float = 20.0           # electrons
    zero_suppression_e: float = 60.0  # electrons, per pixel
    trigger_e: float = 1000.0         # electrons, summed over the track
    pad_cols: int = 8
    pad_rows: int = 10
    cutoff_kev: float = 0.05          # transport cut-off

    def gas(self) -> Gas:
        return dme(self.pressure_mbar, self.temperature_c)


@dataclass
class TrackBatch:
    """Simulated events: ragged pixels and per-event truth (only triggered events).

    ``offsets`` (n + 1,) index the pixel arrays: event k owns
    ``col[offsets[k]:offsets[k+1]]``.  ``window`` holds (min_col, max_col, min_row, max_row)
    of the read-out window.  ``truth`` maps names to (n,) arrays (see :data:`TRUTH_FIELDS`).
    """

    offsets: np.ndarray
    col: np.ndarray
    row: np.ndarray
    charge: np.ndarray
    window: np.ndarray
    truth: dict
    n_simulated: int = 0

    def __len__(self):
        return len(self.offsets) - 1

    @staticmethod
    def concatenate(batches) -> "TrackBatch":
        batches = list(batches)
        offs = [np.zeros(1, dtype=np.int64)]
        start = 0
        for b in batches:
            offs.append(b.offsets[1:] + start)
            start += int(b.offsets[-1])
        return TrackBatch(
            np.concatenate(offs),
            np.concatenate([b.col for b in batches]),
            np.concatenate([b.row for b in batches]),
            np.concatenate([b.charge for b in batches]),
            np.concatenate([b.window for b in batches]).reshape(-1, 4),
            {k: np.concatenate([b.truth[k] for b in batches]) for k in batches[0].truth},
            sum(b.n_simulated for b in batches),
        )


#: truth fields stored per event (name, dtype, unit, description)
TRUTH_FIELDS = (
    ("event_id", "i8", "", "global index of the event in the run (seed stream)"),
    ("energy_kev", "f4", "keV", "photon energy"),
    ("x_mm", "f4", "mm", "absorption point x (readout frame)"),
    ("y_mm", "f4", "mm", "absorption point y (readout frame)"),
    ("z_mm", "f4", "mm", "absorption point height above the GEM (drift length)"),
    ("phi", "f4", "rad", "photoelectron emission azimuth, counter-clockwise from +x"),
    ("theta", "f4", "rad", "photoelectron polar angle from the photon direction"),
    ("auger", "u1", "", "1 when an Auger electron was emitted"),
    ("absorber_z", "u1", "", "atomic number of the absorbing atom"),
    ("pe_energy_kev", "f4", "keV", "photoelectron kinetic energy"),
    ("track_length_mm", "f4", "mm", "photoelectron path length"),
    ("n_electrons", "i4", "", "ionisation electrons created"),
)


@numba.njit(cache=True)
def _tail_normal(state, a):
    """Standard normal deviate conditioned on x > a (a > 0), Marsaglia's tail method."""
    while True:
        x = math.sqrt(a * a - 2.0 * math.log(rng.uniform(state)))
        if rng.uniform(state) * x < a:
            return x


@numba.njit(cache=True, nogil=True)
def _simulate_range(seed, first, n_events, e_grid, e_cdf, pol_deg, pol_ang, spot,
                    photo, ttabs, det, geo, n_cols, n_rows):
    """Simulate events first..first+n_events-1; returns ragged pixels and truth arrays."""
    log_p0, dlog_p, mu_tot, el_cdf, k_bind, auger_e, fluo_y, el_z = photo
    (gap, d_abs, sig_t, gain, theta, enc, thr, trig, pad_c, pad_r, cutoff, w_ev, fano) = det
    pitch, row_pitch, x_off, y_off = geo
    state = np.empty(4, dtype=np.uint64)
    path = np.empty((4096, 5))
    elec = np.empty((1024, 3))
    size = 2 * _HALF + 1
    img = np.zeros((size, size))
    # outputs
    cap = max(n_events * 64, 1024)
    o_col = np.empty(cap, np.int16)
    o_row = np.empty(cap, np.int16)
    o_q = np.empty(cap, np.float32)
    offsets = np.zeros(n_events + 1, np.int64)
    window = np.zeros((n_events, 4), np.int16)
    trig_ok = np.zeros(n_events, np.bool_)
    t_e = np.empty(n_events, np.float32)
    t_x = np.empty(n_events, np.float32)
    t_y = np.empty(n_events, np.float32)
    t_z = np.empty(n_events, np.float32)
    t_phi = np.empty(n_events, np.float32)
    t_theta = np.empty(n_events, np.float32)
    t_aug = np.zeros(n_events, np.uint8)
    t_absz = np.zeros(n_events, np.uint8)
    t_epe = np.empty(n_events, np.float32)
    t_len = np.empty(n_events, np.float32)
    t_ne = np.zeros(n_events, np.int32)
    p_noise = 0.5 * math.erfc(thr / (enc * math.sqrt(2.0))) if enc > 0 else 0.0
    sig_t2 = 2.0 * sig_t * sig_t
    n_out = 0
    for k in range(n_events):
        gi = first + k
        while True:  # retried with larger buffers if a track does not fit
            rng.seed_stream(state, seed, gi)
            energy = sample_energy(state, e_grid, e_cdf)
            mu = lin(mu_tot, log_p0, dlog_p, energy)
            depth = -math.log(1.0 - rng.uniform(state) * (1.0 - math.exp(-mu * gap))) / mu
            z0 = gap - depth
            r = spot[2] * math.sqrt(rng.uniform(state))
            a = 2.0 * math.pi * rng.uniform(state)
            x0 = spot[0] + r * math.cos(a)
            y0 = spot[1] + r * math.sin(a)
            u = rng.uniform(state)
            el = 0
            while el < el_cdf.shape[0] - 1 and u > lin(el_cdf[el], log_p0, dlog_p, energy):
                el += 1
            e_pe = energy
            has_auger = False
            local = 0.0
            if energy > k_bind[el]:
                e_pe = energy - k_bind[el]
                if auger_e[el] > 0.0:
                    if rng.uniform(state) >= fluo_y[el]:
                        has_auger = True
                        local = k_bind[el] - auger_e[el]
            tot = e_pe + 510.99895
            beta = math.sqrt(e_pe * (e_pe + 2.0 * 510.99895)) / tot
            cos_t = sample_cos_theta(state, beta)
            phi = sample_phi(state, pol_deg, pol_ang)
            sin_t = math.sqrt(max(0.0, 1.0 - cos_t * cos_t))
            n = transport(e_pe, x0, y0, z0, sin_t * math.cos(phi), sin_t * math.sin(phi),
                          -cos_t, ttabs, cutoff, state, path, 0)
            if n < 0:
                path = np.empty((path.shape[0] * 4, 5))
                continue
            length = 0.0
            for j in range(1, n):
                length += math.sqrt((path[j, 0] - path[j - 1, 0]) ** 2
                                    + (path[j, 1] - path[j - 1, 1]) ** 2
                                    + (path[j, 2] - path[j - 1, 2]) ** 2)
            if has_auger:
                ca = 2.0 * rng.uniform(state) - 1.0
                pa = 2.0 * math.pi * rng.uniform(state)
                sa = math.sqrt(max(0.0, 1.0 - ca * ca))
                n = transport(auger_e[el], x0, y0, z0, sa * math.cos(pa), sa * math.sin(pa), ca,
                              ttabs, cutoff, state, path, n)
                if n > 0 and local > 0.0:
                    n = local_deposit(x0, y0, z0, local, path, n)
                if n < 0:
                    path = np.empty((path.shape[0] * 4, 5))
                    continue
            e_dep = path[n - 1, 3]
            n_e = n_ionisation_electrons(e_dep, w_ev, fano, state)
            if n_e > elec.shape[0]:
                elec = np.empty((2 * n_e, 3))
            if n_e > 0:
                place_electrons(path, n, n_e, state, elec)
            break
        # absorption pixel: origin of the local image
        c_ref, r_ref = nearest_pixel(x0 * 10.0, y0 * 10.0, pitch, row_pitch, x_off, y_off)
        c_ref -= _HALF
        r_ref -= _HALF
        bmin_c = size
        bmax_c = -1
        bmin_r = size
        bmax_r = -1
        for j in range(n_e):
            ze = min(max(elec[j, 2], 0.0), gap)
            if elec[j, 2] > gap:
                continue  # left the gap through the window
            s = d_abs * math.sqrt(ze)
            xe = elec[j, 0] + s * rng.normal(state)
            ye = elec[j, 1] + s * rng.normal(state)
            # the nearest GEM hole collects the electron
            hc, hr = nearest_pixel(xe, ye, _GEM_PITCH_CM, _GEM_PITCH_CM * 0.8660254037844386,
                                   _GEM_OFFSET_CM[0], _GEM_OFFSET_CM[1])
            xh = (hc - 0.5 * (hr & 1)) * _GEM_PITCH_CM + _GEM_OFFSET_CM[0]
            yh = _GEM_OFFSET_CM[1] - hr * _GEM_PITCH_CM * 0.8660254037844386
            if theta > 0.0:
                g = gain * rng.gamma(state, theta + 1.0) / (theta + 1.0)
            else:
                g = gain * rng.exponential(state)
            # avalanche spread over the pixels by the transfer-gap diffusion
            xm = xh * 10.0
            ym = yh * 10.0
            pc, pr = nearest_pixel(xm, ym, pitch, row_pitch, x_off, y_off)
            wsum = 0.0
            for dr in range(-2, 3):
                for dc in range(-2, 3):
                    cc = pc + dc
                    rr = pr + dr
                    cx = (cc - 0.5 * (rr & 1)) * pitch + x_off
                    cy = y_off - rr * row_pitch
                    d2 = (xm - cx) ** 2 + (ym - cy) ** 2
                    if d2 < 4.5 * sig_t2:
                        wsum += math.exp(-d2 / sig_t2)
            for dr in range(-2, 3):
                for dc in range(-2, 3):
                    cc = pc + dc
                    rr = pr + dr
                    cx = (cc - 0.5 * (rr & 1)) * pitch + x_off
                    cy = y_off - rr * row_pitch
                    d2 = (xm - cx) ** 2 + (ym - cy) ** 2
                    if d2 < 4.5 * sig_t2:
                        li = rr - r_ref
                        lj = cc - c_ref
                        if 0 <= li < size and 0 <= lj < size:
                            img[li, lj] += g * math.exp(-d2 / sig_t2) / wsum
                            bmin_r = min(bmin_r, li)
                            bmax_r = max(bmax_r, li)
                            bmin_c = min(bmin_c, lj)
                            bmax_c = max(bmax_c, lj)
        # noise on signal pixels, zero suppression, trigger
        total = 0.0
        wmin_c = size
        wmax_c = -1
        wmin_r = size
        wmax_r = -1
        for li in range(bmin_r, bmax_r + 1):
            for lj in range(bmin_c, bmax_c + 1):
                if img[li, lj] != 0.0:
                    cc = lj + c_ref
                    rr = li + r_ref
                    v = img[li, lj] + enc * rng.normal(state)
                    if cc < 0 or cc >= n_cols or rr < 0 or rr >= n_rows:
                        v = 0.0
                    if v >= thr:
                        img[li, lj] = v
                        total += v
                        wmin_r = min(wmin_r, li)
                        wmax_r = max(wmax_r, li)
                        wmin_c = min(wmin_c, lj)
                        wmax_c = max(wmax_c, lj)
                    else:
                        img[li, lj] = -1.0  # signal pixel below threshold
        triggered = total >= trig and wmax_r >= 0
        if triggered:
            c_lo = max(wmin_c + c_ref - pad_c, 0)
            c_hi = min(wmax_c + c_ref + pad_c, n_cols - 1)
            r_lo = max(wmin_r + r_ref - pad_r, 0)
            r_hi = min(wmax_r + r_ref + pad_r, n_rows - 1)
            window[k, 0] = c_lo
            window[k, 1] = c_hi
            window[k, 2] = r_lo
            window[k, 3] = r_hi
            n_win = (c_hi - c_lo + 1) * (r_hi - r_lo + 1)
            need = n_out + n_win
            if need > o_col.shape[0]:
                new_cap = max(2 * o_col.shape[0], need)
                o_col = np.concatenate((o_col, np.empty(new_cap - o_col.shape[0], np.int16)))
                o_row = np.concatenate((o_row, np.empty(new_cap - o_row.shape[0], np.int16)))
                o_q = np.concatenate((o_q, np.empty(new_cap - o_q.shape[0], np.float32)))
            # pure-noise pixels above threshold among the empty pixels of the window
            n_empty = 0
            for rr in range(r_lo, r_hi + 1):
                for cc in range(c_lo, c_hi + 1):
                    li = rr - r_ref
                    lj = cc - c_ref
                    if not (0 <= li < size and 0 <= lj < size) or img[li, lj] == 0.0:
                        n_empty += 1
            n_noise = rng.binomial(state, n_empty, p_noise)
            for _ in range(n_noise):
                rr = r_lo + int(rng.uniform(state) * (r_hi - r_lo + 1))
                cc = c_lo + int(rng.uniform(state) * (c_hi - c_lo + 1))
                li = rr - r_ref
                lj = cc - c_ref
                if 0 <= li < size and 0 <= lj < size and img[li, lj] == 0.0:
                    img[li, lj] = enc * _tail_normal(state, thr / enc)
            for rr in range(r_lo, r_hi + 1):
                for cc in range(c_lo, c_hi + 1):
                    li = rr - r_ref
                    lj = cc - c_ref
                    if 0 <= li < size and 0 <= lj < size and img[li, lj] > 0.0:
                        o_col[n_out] = cc
                        o_row[n_out] = rr
                        o_q[n_out] = img[li, lj]
                        n_out += 1
            # clear the window (noise pixels may lie outside the track's bounding box)
            for rr in range(r_lo, r_hi + 1):
                for cc in range(c_lo, c_hi + 1):
                    li = rr - r_ref
                    lj = cc - c_ref
                    if 0 <= li < size and 0 <= lj < size:
                        img[li, lj] = 0.0
        for li in range(bmin_r, bmax_r + 1):
            for lj in range(bmin_c, bmax_c + 1):
                img[li, lj] = 0.0
        offsets[k + 1] = n_out
        trig_ok[k] = triggered
        t_e[k] = energy
        t_x[k] = x0 * 10.0
        t_y[k] = y0 * 10.0
        t_z[k] = z0 * 10.0
        t_phi[k] = phi
        t_theta[k] = math.acos(cos_t)
        t_aug[k] = 1 if has_auger else 0
        t_absz[k] = el_z[el]
        t_epe[k] = e_pe
        t_len[k] = length * 10.0
        t_ne[k] = n_e
    return (offsets, o_col[:n_out].copy(), o_row[:n_out].copy(), o_q[:n_out].copy(), window,
            trig_ok, t_e, t_x, t_y, t_z, t_phi, t_theta, t_aug, t_absz, t_epe, t_len, t_ne)


class GpdSimulator:
    """The Gas Pixel Detector Monte Carlo (tables built once, reused for every chunk).

    Examples
    --------
    >>> sim = GpdSimulator()
    >>> batch = sim.simulate(SourceConfig(EnergySpectrum.fixed(4.0), 1.0, 0.0), 100, seed=1)
    >>> len(batch) <= 100
    True
    """

    def __init__(self, config: GpdConfig = GpdConfig(), grid: HexGrid = IXPE_GRID):
        self.config = config
        self.grid = grid
        gas = config.gas()
        self.gas = gas
        self._photo = photo_tables(gas)
        self._ttabs = TransportTables.for_gas(gas).as_tuple()
        c = config
        self._det = (c.gap_mm / 10.0, c.diffusion_um_sqrt_cm * 1e-4,
                     c.transfer_diffusion_um_sqrt_cm * math.sqrt(c.transfer_gap_mm / 10.0) * 1e-3,
                     float(c.gem_gain), float(c.polya_theta), float(c.noise_enc),
                     float(c.zero_suppression_e), float(c.trigger_e), int(c.pad_cols),
                     int(c.pad_rows), float(c.cutoff_kev), float(gas.w_ev), float(gas.fano))
        self._geo = (grid.pitch_mm, grid.row_pitch_mm, grid.x_offset_mm, grid.y_offset_mm)

    def simulate_range(self, source: SourceConfig, first: int, n_events: int, seed: int,
                       ) -> TrackBatch:
        """Events ``first .. first + n_events - 1`` of run ``seed`` (one thread)."""
        spot = np.array([source.spot_x_mm, source.spot_y_mm, source.spot_radius_mm]) / 10.0
        out = _simulate_range(int(seed), int(first), int(n_events),
                              np.array(source.spectrum.grid_kev, dtype=float),
                              np.array(source.spectrum.cdf, dtype=float),
                              float(source.polarization_degree),
                              float(source.polarization_angle), spot, self._photo,
                              self._ttabs, self._det, self._geo,
                              self.grid.n_cols, self.grid.n_rows)
        (offsets, col, row, q, window, ok, *truth) = out
        names = [f[0] for f in TRUTH_FIELDS]
        tdict = dict(zip(names[1:], truth))
        tdict = {"event_id": np.arange(first, first + n_events, dtype=np.int64), **tdict}
        # keep triggered events only
        counts = np.diff(offsets)[ok]
        keep = np.repeat(ok, np.diff(offsets))
        return TrackBatch(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                          col[keep], row[keep], q[keep], window[ok],
                          {k: v[ok] for k, v in tdict.items()}, n_simulated=n_events)

    def simulate(self, source: SourceConfig, n_events: int, *, seed: int, first: int = 0,
                 n_threads: int | None = None, block: int = 2000) -> TrackBatch:
        """Simulate ``n_events`` in this process, over ``n_threads`` threads (default: CPUs)."""
        if n_events < 0:
            raise InputError(f"number of events must be >= 0, got {n_events}")
        if seed < 0:
            raise InputError(f"seed must be >= 0, got {seed}")
        n_threads = n_threads or os.cpu_count() or 1
        starts = list(range(first, first + n_events, block)) or [first]
        sizes = [min(block, first + n_events - s) for s in starts]
        if n_threads == 1 or len(starts) == 1:
            parts = [self.simulate_range(source, s, n, seed) for s, n in zip(starts, sizes)]
        else:
            with ThreadPoolExecutor(n_threads) as pool:
                parts = list(pool.map(lambda a: self.simulate_range(source, a[0], a[1], seed),
                                      zip(starts, sizes)))
        return TrackBatch.concatenate(parts)


def config_dict(config: GpdConfig, source: SourceConfig, n_events: int, seed: int) -> dict:
    """Everything that defines a run, as plain JSON-able values (stored in the event file)."""
    return {"detector": asdict(config), "source": {
        "spectrum": asdict(source.spectrum), "polarization_degree": source.polarization_degree,
        "polarization_angle": source.polarization_angle, "spot_x_mm": source.spot_x_mm,
        "spot_y_mm": source.spot_y_mm, "spot_radius_mm": source.spot_radius_mm},
        "n_events": n_events, "seed": seed}
