"""The contexts' table parameters: fitted by the encoder, stored compactly, read back checked.

Each context's table has two parameters (z, h) (mriae.wavelet.model). They are predicted from
those of the context's neighbours in its group's grid of contexts (contexts.predicted, LOCO-I's
median; DEFAULT where it has none); only those that differ from their prediction are stored:
their number, then for each, in context order, the number of contexts since the previous one
(or the start) and its (z, h) less their predictions. The encoder gives a context parameters
of its own only where the bits they save pay for the bytes they take: most contexts code a few
symbols, and their predicted parameters serve them as well.
"""

from __future__ import annotations

import constriction
import numpy as np

from mriae.predictive import tables, tokens, varints
from mriae.wavelet import contexts, model

DEFAULT = (40, 0)
"""The parameters that predict those of a context without neighbours."""
PARAMETER_BITS = 6.0
"""About what a byte of a context's stored parameters costs once compressed (for the encoder's choice)."""


class Parameters:
    """Each context's parameters (z, h) and the token alphabet."""

    def __init__(self, zero: list[int], ratio: list[int], alphabet: int) -> None:
        self.zero, self.ratio, self.alphabet = zero, ratio, alphabet

    def stored(self) -> list[int]:
        """The stored form: how many contexts have parameters other than their predictions,
        then for each of those, in order, how many contexts lie between it and the previous
        one (or the start), and its (z, h) less their predictions."""
        near = contexts.neighbours()
        explicit, gap = [], 0
        for context in range(contexts.CONTEXTS):
            predicted = _predicted(self.zero, self.ratio, near[context])
            zero, ratio = self.zero[context] - predicted[0], self.ratio[context] - predicted[1]
            if zero or ratio:
                explicit += [gap, zero, ratio]
                gap = 0
            else:
                gap += 1
        return [len(explicit) // 3, *explicit]

    @classmethod
    def read(cls, reader: varints.Reader, alphabet: int) -> Parameters:
        """The parameters stored by :meth:`stored`, each checked against its range."""
        zero, ratio = [0] * contexts.CONTEXTS, [0] * contexts.CONTEXTS
        near = contexts.neighbours()
        remaining = reader.read(0, contexts.CONTEXTS, "the number of contexts with parameters of their own")
        upcoming = reader.read(0, contexts.CONTEXTS - 1, "a gap between contexts") if remaining else contexts.CONTEXTS
        for context in range(contexts.CONTEXTS):
            pz, ph = _predicted(zero, ratio, near[context])
            zero[context], ratio[context] = pz, ph
            if context == upcoming:
                zero[context] += reader.read(model.ZERO_RANGE[0] - pz, model.ZERO_RANGE[1] - pz, "a zero parameter")
                ratio[context] += reader.read(model.RATIO_RANGE[0] - ph, model.RATIO_RANGE[1] - ph, "a ratio parameter")
                remaining -= 1
                if remaining:
                    upcoming = context + 1 + reader.read(0, contexts.CONTEXTS - context - 2, "a gap between contexts")
        return cls(zero, ratio, alphabet)

    def table(self, context: int) -> constriction.stream.model.Categorical:
        """The constriction model of a context."""
        return model.table(self.zero[context], self.ratio[context], self.alphabet)

    def bit_costs(self) -> np.ndarray:
        """About the bits of each token (columns) in each context (rows), raw bits included."""
        probabilities = model.probabilities(self.zero, self.ratio, self.alphabet)
        raw_bits = tokens.raw_bit_counts(np.arange(self.alphabet))
        return -np.log2(np.maximum(probabilities, 2.0**-tables.PRECISION)) + raw_bits


def _predicted(zero: list[int], ratio: list[int], where: tuple[int, int, int]) -> tuple[int, int]:
    """The predicted (z, h) of a context whose :func:`contexts.neighbours` are ``where``."""
    return contexts.predicted(zero, where, DEFAULT[0]), contexts.predicted(ratio, where, DEFAULT[1])


def fitted(coded: list[tuple[np.ndarray, np.ndarray]]) -> Parameters:
    """The parameters to store for the (contexts, values) of every phase: for each context,
    those that fit its tokens best, where that pays for the bytes they take, else its
    predicted ones."""
    keys = np.concatenate([k for k, _ in coded]).astype(np.int64)
    symbols = np.concatenate([tokens.tokens_of(v)[0] for _, v in coded]).astype(np.int64)
    alphabet = max(2, int(symbols.max()) + 1)
    counts = np.bincount(keys * alphabet + symbols, minlength=contexts.CONTEXTS * alphabet)
    counts = counts.reshape(contexts.CONTEXTS, alphabet)
    zero, ratio = [0] * contexts.CONTEXTS, [0] * contexts.CONTEXTS
    near = contexts.neighbours()
    mean_excess = _mean_excess(counts)
    for context in range(contexts.CONTEXTS):
        guess = _predicted(zero, ratio, near[context])
        row = counts[context]
        total = int(row.sum())
        if total == 0:
            zero[context], ratio[context] = guess
            continue
        own = _refined(row, model.fit(int(row[0]), total, mean_excess[context]))
        own_bits, guess_bits = model.costs(row, [own[0], guess[0]], [own[1], guess[1]])
        zero[context], ratio[context] = own if own_bits + _parameter_bits(own, guess) < guess_bits else guess
    return Parameters(zero, ratio, alphabet)


def _mean_excess(counts: np.ndarray) -> np.ndarray:
    """Per context, an estimate of the sum of (|q| − 1) over its nonzero coefficients, from
    token counts (a large token counts as the middle of its values)."""
    first, end = model.token_ranges(counts.shape[1])
    magnitude = np.where(end - first == 1, (first + 1) // 2, (first + end - 1) / 4.0)  # |q| = ⌈u / 2⌉
    return counts[:, 1:] @ (magnitude[1:] - 1.0)


def _refined(counts: np.ndarray, start: tuple[int, int]) -> tuple[int, int]:
    """A local minimum, from ``start``, of the bits of tokens with these ``counts``."""
    best = start
    for _ in range(16):
        candidates = [best] + [(best[0] + dz, best[1] + dh) for dz, dh in ((1, 0), (-1, 0), (0, 1), (0, -1))
                               if model.ZERO_RANGE[0] <= best[0] + dz <= model.ZERO_RANGE[1]
                               and model.RATIO_RANGE[0] <= best[1] + dh <= model.RATIO_RANGE[1]]
        chosen = int(np.argmin(model.costs(counts, [z for z, _ in candidates], [h for _, h in candidates])))
        if chosen == 0:
            break
        best = candidates[chosen]
    return best


def _parameter_bits(own: tuple[int, int], guess: tuple[int, int]) -> float:
    """About what storing ``own`` where ``guess`` is predicted costs (its varints, compressed)."""
    return PARAMETER_BITS * len(varints.pack([own[0] - guess[0], own[1] - guess[1]]))
