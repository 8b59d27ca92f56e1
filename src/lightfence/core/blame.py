"""Which landmarks INCONSISTENT verdicts blame, summed over many devices.

A device can only add delay, so it can only grow its caps: with honest, well-surveyed landmarks
F is never empty. An INCONSISTENT verdict therefore names landmarks whose caps are too small
(Verdict.implicated: the smallest set whose removal reconciles the rest). One verdict proves
little (two disjoint caps name both); a landmark named across many devices, alone or with few
others, is lying or mis-surveyed. The verifier service scores landmarks with this function and
flags those past its threshold for review.

Caveat for the service: a device key cloned onto two machines far apart can answer two landmarks
fast from two places and frame honest landmarks. Count each device once (its latest verdict),
and weigh devices whose keys live in hardware above the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from lightfence.core.kinds import VerdictKind


class NamesLandmarks(Protocol):
    """What scoring needs of a verdict: core.verdict.Verdict has it; a service row can too."""

    @property
    def kind(self) -> VerdictKind: ...

    @property
    def implicated(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class LandmarkBlame:
    """How strongly a set of verdicts implicates one landmark."""

    named: int
    """INCONSISTENT verdicts that name the landmark."""
    alone: int
    """Of those, verdicts that name no other landmark."""
    blame: float
    """Sum over those verdicts of 1 / (landmarks named): one unit of blame per verdict, shared."""


def implicated_landmarks(verdicts: Iterable[NamesLandmarks]) -> dict[str, LandmarkBlame]:
    """Blame per landmark id over `verdicts` (pass one verdict per device), highest first."""
    named: dict[str, int] = {}
    alone: dict[str, int] = {}
    blame: dict[str, float] = {}
    for verdict in verdicts:
        if verdict.kind is not VerdictKind.INCONSISTENT or not verdict.implicated:
            continue
        ids = set(verdict.implicated)
        for lid in ids:
            named[lid] = named.get(lid, 0) + 1
            alone[lid] = alone.get(lid, 0) + (len(ids) == 1)
            blame[lid] = blame.get(lid, 0.0) + 1.0 / len(ids)
    order = sorted(blame, key=lambda lid: (-blame[lid], lid))
    return {lid: LandmarkBlame(named[lid], alone[lid], blame[lid]) for lid in order}


def flagged(scores: dict[str, LandmarkBlame], min_blame: float) -> list[str]:
    """Landmark ids whose blame reaches `min_blame`, highest first: to review, and whose records
    stop counting until cleared (the service's decision, as for a landmark that breaks physics)."""
    return [lid for lid, score in scores.items() if score.blame >= min_blame]
