"""Counter-seeded random numbers for compiled Monte Carlo loops.

Every simulated event draws from its own xoshiro256** stream, seeded from ``(seed, event
index)`` through splitmix64.  An event's randomness therefore depends only on the run seed and
its global index: a simulation gives identical events whatever the chunking, the number of
threads or the number of dask workers.

The state of one stream is a ``uint64`` array of length 4.  All functions are numba-compiled
and meant to be called from other compiled code; :func:`uniform_array` and
:func:`normal_ziggurat_array` expose a stream to Python for tests.  Besides the plain
samplers, the fast ones of the hot loops: :func:`normal_ziggurat` (several times cheaper than
Box-Muller), :func:`gamma_given_normal` and :func:`normal_tail`.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_U = np.uint64
_GOLDEN = _U(0x9E3779B97F4A7C15)
_MIX1 = _U(0xBF58476D1CE4E5B9)
_MIX2 = _U(0x94D049BB133111EB)


@numba.njit(cache=True, inline="always")
def _splitmix64(x):
    """One splitmix64 step; returns (new counter, output)."""
    x = x + _GOLDEN
    z = x
    z = (z ^ (z >> _U(30))) * _MIX1
    z = (z ^ (z >> _U(27))) * _MIX2
    return x, z ^ (z >> _U(31))


@numba.njit(cache=True)
def seed_stream(state, seed, index):
    """Seed ``state`` (uint64[4]) for stream ``index`` of run ``seed`` (both >= 0)."""
    x = _U(seed) * _U(0xD1B54A32D192ED03) + _U(index) * _GOLDEN + _U(0x632BE59BD9B4E019)
    for i in range(4):
        x, z = _splitmix64(x)
        state[i] = z
    # xoshiro must not start from an all-zero state
    if state[0] == 0 and state[1] == 0 and state[2] == 0 and state[3] == 0:
        state[0] = _U(1)


@numba.njit(cache=True, inline="always")
def _rotl(x, k):
    return (x << _U(k)) | (x >> _U(64 - k))


@numba.njit(cache=True, inline="always")
def next_u64(state):
    """Next 64 random bits of a xoshiro256** stream."""
    result = _rotl(state[1] * _U(5), 7) * _U(9)
    t = state[1] << _U(17)
    state[2] ^= state[0]
    state[3] ^= state[1]
    state[1] ^= state[2]
    state[0] ^= state[3]
    state[2] ^= t
    state[3] = _rotl(state[3], 45)
    return result


@numba.njit(cache=True, inline="always")
def uniform(state):
    """Uniform float in the open interval (0, 1), 53 random bits."""
    return (np.float64(next_u64(state) >> _U(11)) + 0.5) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, inline="always")
def normal(state):
    """Standard normal deviate (Box-Muller, one of the pair)."""
    u1 = uniform(state)
    u2 = uniform(state)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@numba.njit(cache=True, inline="always")
def exponential(state):
    """Exponential deviate with unit mean."""
    return -math.log(uniform(state))


@numba.njit(cache=True)
def gamma(state, shape):
    """Gamma(shape, scale=1) deviate, Marsaglia & Tsang (2000), any shape > 0."""
    if shape < 1.0:
        # boost: Gamma(a) = Gamma(a + 1) * U^(1/a)
        return gamma(state, shape + 1.0) * uniform(state) ** (1.0 / shape)
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        x = normal(state)
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        u = uniform(state)
        if math.log(u) < 0.5 * x * x + d - d * v + d * math.log(v):
            return d * v


@numba.njit(cache=True)
def poisson(state, lam):
    """Poisson deviate; inversion below lam = 30, rounded normal above."""
    if lam <= 0.0:
        return 0
    if lam > 30.0:
        k = int(math.floor(lam + math.sqrt(lam) * normal(state) + 0.5))
        return max(k, 0)
    limit = math.exp(-lam)
    k = 0
    p = uniform(state)
    while p > limit:
        k += 1
        p *= uniform(state)
    return k


@numba.njit(cache=True)
def binomial(state, n, p):
    """Binomial(n, p) deviate: Poisson approximation for small p, normal for large n*p*(1-p)."""
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    if n < 64:
        k = 0
        for _ in range(n):
            if uniform(state) < p:
                k += 1
        return k
    if p < 0.05:
        return min(poisson(state, n * p), n)
    k = int(math.floor(n * p + math.sqrt(n * p * (1.0 - p)) * normal(state) + 0.5))
    return min(max(k, 0), n)


@numba.njit(cache=True)
def uniform_array(seed, index, n):
    """``n`` uniforms from stream ``index`` of run ``seed`` (for tests and Python callers)."""
    state = np.empty(4, dtype=np.uint64)
    seed_stream(state, seed, index)
    out = np.empty(n)
    for i in range(n):
        out[i] = uniform(state)
    return out


def _ziggurat_tables(n_layers: int = 256, r: float = 3.6541528853610088):
    """Layer edges ``x`` (n_layers + 1,) and ``f(x) = exp(-x^2/2)`` of the normal ziggurat of
    Marsaglia & Tsang (2000): equal-area layers, ``x[0]`` the base's virtual width, ``x[1]
    = r`` where the tail starts, ``x[n_layers] = 0``."""
    f = lambda t: math.exp(-0.5 * t * t)  # noqa: E731
    area = r * f(r) + math.sqrt(math.pi / 2) * math.erfc(r / math.sqrt(2))
    x = np.zeros(n_layers + 1)
    x[0], x[1] = area / f(r), r
    for i in range(1, n_layers - 1):
        x[i + 1] = math.sqrt(-2.0 * math.log(area / x[i] + f(x[i])))
    return x, np.exp(-0.5 * x * x)


_ZIG_X, _ZIG_F = _ziggurat_tables()
_ZIG_R = float(_ZIG_X[1])


@numba.njit(cache=True)
def normal_ziggurat(state):
    """Standard normal deviate, ziggurat method (Marsaglia & Tsang 2000, 256 layers): one
    64-bit draw and a comparison ~99% of the time, several times cheaper than Box-Muller."""
    while True:
        bits = next_u64(state)
        i = np.int64(bits & np.uint64(255))
        negative = (bits >> np.uint64(8)) & np.uint64(1)
        x = np.float64(bits >> np.uint64(11)) * (1.0 / 9007199254740992.0) * _ZIG_X[i]
        if x < _ZIG_X[i + 1]:
            return -x if negative else x
        if i == 0:
            # tail beyond r: Marsaglia (1964)
            while True:
                xx = -math.log(uniform(state)) / _ZIG_R
                yy = -math.log(uniform(state))
                if yy + yy >= xx * xx:
                    break
            x = _ZIG_R + xx
            return -x if negative else x
        if _ZIG_F[i] + uniform(state) * (_ZIG_F[i + 1] - _ZIG_F[i]) < math.exp(-0.5 * x * x):
            return -x if negative else x


@numba.njit(cache=True)
def normal_ziggurat_array(seed, index, n):
    """``n`` ziggurat normals from stream ``index`` of run ``seed`` (for tests)."""
    state = np.empty(4, dtype=np.uint64)
    seed_stream(state, seed, index)
    out = np.empty(n)
    for i in range(n):
        out[i] = normal_ziggurat(state)
    return out


@numba.njit(cache=True)
def gamma_given_normal(state, shape, z):
    """Gamma(shape >= 1) deviate, Marsaglia & Tsang (2000) with its squeeze and ziggurat
    normals; ``z`` is the first standard normal to try."""
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        v = 1.0 + c * z
        if v > 0.0:
            v = v * v * v
            u = uniform(state)
            z2 = z * z
            if u < 1.0 - 0.0331 * z2 * z2:
                return d * v
            if math.log(u) < 0.5 * z2 + d * (1.0 - v + math.log(v)):
                return d * v
        z = normal_ziggurat(state)


@numba.njit(cache=True)
def normal_tail(state, a):
    """Standard normal deviate conditioned on ``z > a`` (Robert 1995 for a > 0.5)."""
    if a < 0.5:
        while True:
            z = normal_ziggurat(state)
            if z > a:
                return z
    lam = 0.5 * (a + math.sqrt(a * a + 4.0))
    while True:
        z = a + exponential(state) / lam
        if uniform(state) < math.exp(-0.5 * (z - lam) * (z - lam)):
            return z
