"""Counter-seeded random numbers for compiled Monte Carlo loops.

Every simulated event draws from its own xoshiro256** stream, seeded from ``(seed, event
index)`` through splitmix64.  An event's randomness therefore depends only on the run seed and
its global index: a simulation gives identical events whatever the chunking, the number of
threads or the number of dask workers.

The state of one stream is a ``uint64`` array of length 4.  All functions are numba-compiled
and meant to be called from other compiled code; :func:`uniform_array` exposes a stream to
Python for tests.
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
