"""Which outputs of the two sides are compared (:func:`pair_outputs`).

The comparison itself is :func:`edgevit.metrics.compare`, and its checks come from the one judge,
:meth:`edgevit.tolerances.Tolerance.judge` (:class:`edgevit.tolerances.Check` rows).
"""

from __future__ import annotations

from ..errors import VerificationError


def pair_outputs(ref_out: dict, cand_out: dict) -> list[tuple[str, str]]:
    """(reference name, candidate name) of the outputs to compare: the names both have, else the
    single output of each."""
    common = [n for n in ref_out if n in cand_out]
    if common:
        return [(n, n) for n in common]
    if len(ref_out) == 1 and len(cand_out) == 1:
        return [(next(iter(ref_out)), next(iter(cand_out)))]
    raise VerificationError(
        f"no output names in common: reference {sorted(ref_out)} vs candidate {sorted(cand_out)}"
    )


__all__ = ["pair_outputs"]
