"""Weight initialisers, chosen from the activation unless overridden.

He (Kaiming) normal, ``std = sqrt(2 / fan_in)``, keeps ReLU-family activations at unit
variance (He et al. 2015); Xavier/Glorot uniform, ``limit = sqrt(6 / (fan_in + fan_out))``,
suits sigmoid, tanh, softmax and linear units (Glorot & Bengio 2010).
"""

from __future__ import annotations

import numpy as np


def he_normal(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)


def he_uniform(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, (fan_in, fan_out))


def xavier_uniform(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out))


def xavier_normal(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / (fan_in + fan_out))


INITIALIZERS = {"he": he_normal, "he_uniform": he_uniform, "xavier": xavier_uniform,
                "xavier_normal": xavier_normal}


def make_init(name: str):
    if name not in INITIALIZERS:
        raise ValueError(f"unknown initialiser {name!r}; choose one of {', '.join(INITIALIZERS)}")
    return INITIALIZERS[name]
