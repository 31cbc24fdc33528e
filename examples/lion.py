"""Lion, a plug-in optimizer: ``qa train --plugin examples/lion.py -o lion,adam``.

The worked example of docs/plugins.md. It imports only the public plug-in API,
``models.optimizers`` (``Optimizer``, ``register_optimizer``), and NumPy.
"""

from __future__ import annotations

import numpy as np

from models.optimizers import Optimizer, register_optimizer


@register_optimizer("lion")
class Lion(Optimizer):
    """Lion, EvoLved Sign Momentum (Chen et al. 2023, "Symbolic Discovery of Optimization
    Algorithms", arXiv:2302.06675, Algorithm 2), for every parameter with gradient g::

        c = b1 * m + (1 - b1) * g                 interpolate the momentum and the gradient
        theta -= lr * (sign(c) + wd * theta)      a step of the same size in every coordinate
        m = b2 * m + (1 - b2) * g                 then the momentum, with its own beta

    Weight decay is decoupled (it multiplies theta, not the gradient) and uses the weights
    before the step; it skips the parameters named in ``no_decay``. sign(0) = 0.

    Parameters
    ----------
    lr : float, or ndarray of shape (S, 1)
        Step size (the paper's eta; its default 1e-4: Lion's sign step makes every coordinate
        move by lr, so it wants a rate 3-10x below AdamW's). An (S, 1) array gives each row of
        an ensemble's (S, D) parameters its own rate.
    betas : (b1, b2), each in [0, 1)
        b1 weighs the momentum in the step's sign, b2 the momentum's own average (paper:
        0.9, 0.99).
    weight_decay : float
        The paper's lambda (default 0).
    """

    elementwise = True  # each coordinate's step uses only its own p, g, m (docs/plugins.md)

    def __init__(self, lr: float | np.ndarray = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0) -> None:
        super().__init__(lr)
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        # Python floats stay weak scalars: float32 parameters stay float32
        self.betas, self.weight_decay = (float(b1), float(b2)), float(weight_decay)

    def slots(self) -> tuple[str, ...]:
        return ("m", "tmp")  # the momentum, and a scratch buffer for the step

    def _update(self, p: np.ndarray, g: np.ndarray, st: dict, first: bool,
                decay: bool) -> None:
        b1, b2 = self.betas
        m, tmp = st["m"], st["tmp"]  # (D,) or, in an ensemble, (S, D), as p
        # 1. c = b1 m + (1 - b1) g, and its sign
        np.multiply(m, b1, out=tmp)
        tmp += (1.0 - b1) * g
        np.sign(tmp, out=tmp)
        # 2. theta -= lr (sign(c) + wd theta), with theta before this step
        if self.weight_decay and decay:
            tmp += self.weight_decay * p
        tmp *= self.lr  # a float, or (S, 1) broadcast over the rows: (S, D)
        p -= tmp
        # 3. m = b2 m + (1 - b2) g: after the step, so the step saw b1, not b2
        m *= b2
        m += (1.0 - b2) * g
