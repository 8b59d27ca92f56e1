"""The four verdicts and the reasons behind them, as small enums shared by every engine."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class VerdictKind(StrEnum):
    """What the measurements prove. Precedence: INCONSISTENT, REFUTED, VERIFIED, UNVERIFIED."""

    VERIFIED = "VERIFIED"
    """F is not empty and every point of F_f (F when no liar is tolerated) is in the allowed
    region."""
    REFUTED = "REFUTED"
    """F is not empty and no point of F_f is in the claimed region: the declaration is false."""
    INCONSISTENT = "INCONSISTENT"
    """F is empty: the measurements contradict each other (lying landmark or attack)."""
    UNVERIFIED = "UNVERIFIED"
    """Not enough evidence either way."""

    @property
    def code(self) -> int:
        return _CODES[self]

    @classmethod
    def from_code(cls, code: int) -> VerdictKind:
        return _KINDS[code]


_KINDS = (
    VerdictKind.VERIFIED,
    VerdictKind.REFUTED,
    VerdictKind.INCONSISTENT,
    VerdictKind.UNVERIFIED,
)
_CODES = {kind: i for i, kind in enumerate(_KINDS)}


class Reason(IntEnum):
    """Why a verdict came out as it did; the batch engine returns these codes."""

    NO_MEASUREMENTS = 0
    EMPTY_FEASIBLE = 1
    OUTSIDE_CLAIM = 2
    INSIDE_ALLOWED = 3
    MAY_LEAVE_ALLOWED = 4
    LANDMARKS_OUTVOTED = 5
    """F is empty but F_f is not: at most f landmarks disagree with all the others."""

    def text(self, allowed: str, forbidden: str, claimed: str | None) -> str:
        if self is Reason.NO_MEASUREMENTS:
            return "no measurements: nothing is known about the device's position"
        if self is Reason.EMPTY_FEASIBLE:
            return (
                "the distance caps have no point in common: a landmark lied or is mis-surveyed, "
                "or the evidence was tampered with"
            )
        if self is Reason.LANDMARKS_OUTVOTED:
            return (
                "the distance caps have no point in common, but all except a few tolerated "
                "landmarks agree: those landmarks lied or are mis-surveyed"
            )
        if self is Reason.OUTSIDE_CLAIM:
            return f"no position consistent with the RTTs lies in the declared country {claimed}"
        if self is Reason.INSIDE_ALLOWED:
            return f"every position consistent with the RTTs lies {allowed}"
        return (
            f"the RTTs also allow positions {forbidden}: closer landmarks or faster paths "
            "are needed to decide"
        )
