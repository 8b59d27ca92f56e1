"""Policies: where a device may be (the allowed region A) and how fast a signal may travel.

Text forms, as used on the command line and in the verifier's licences:

    outside:CN,HK,MO          anywhere except these countries as governed: their land,
                              internal waters, 12 nm territorial sea, islands and disputed
                              areas they claim or control (geo.governed, docs/regions.md)
    in:DE  /  in:DE,FR        inside these countries' land
    in+sea:DE                 inside these countries' land or territorial sea (opt-in)
    within:LAT,LON,RADIUS_KM  within a distance of a licensed site
    in-declared-country       inside the land of whatever country the device declares
    in-declared-country+sea   the same, or in that country's territorial sea

A declared country is always judged as governed (claimed_region): REFUTED never fires for a
device in its declared country's waters, on its islands or in areas it claims.

Every policy also says how many lying landmarks a verdict must survive (`liars`): a count, or
"auto" (the default: 1 for a device measured by at least 4 landmarks, 0 below; core.robust).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from lightfence.core.robust import DEFAULT_LIARS, Liars, check_liars
from lightfence.geo.governed import Governed, LandAndSea
from lightfence.geo.regions import Complement, Countries, Disc, Region
from lightfence.units import Bound


class PolicyError(ValueError):
    """A policy text that cannot be understood."""


@cache
def countries_region(codes: tuple[str, ...]) -> Countries:
    """One shared Countries object per set of codes, so its boundary index is built once."""
    return Countries(codes)


@cache
def governed_region(codes: tuple[str, ...], purpose: str = "restricted") -> Governed:
    """One shared Governed object per set of codes and purpose (restricted set or claim)."""
    return Governed(codes, "claim" if purpose == "claim" else "restricted")


@cache
def sea_region(codes: tuple[str, ...]) -> LandAndSea:
    """One shared land-and-territorial-sea region per set of codes (`in+sea:`)."""
    return LandAndSea(codes)


@cache
def _outside(codes: tuple[str, ...]) -> Region:
    return Complement(governed_region(codes))


@dataclass(frozen=True)
class Policy:
    """What a VERIFIED verdict promises: every position the RTTs allow lies in `allowed`."""

    text: str
    """The policy as written, for display and for evidence bundles."""
    allowed: Region | None
    """The allowed region A; None means 'the country the device declares'."""
    bound: Bound = Bound.VACUUM
    liars: Liars = DEFAULT_LIARS
    """Lying landmarks each verdict must survive: a count, or 'auto' (see core.robust)."""
    sea: bool = False
    """in-declared-country+sea: the declared country's territorial sea is allowed too."""

    @property
    def in_declared_country(self) -> bool:
        return self.allowed is None

    def allowed_for(self, claimed: str | None) -> Region:
        """The allowed region for a device that declares `claimed` (a country code or None)."""
        if self.allowed is not None:
            return self.allowed
        if not claimed:
            raise PolicyError("policy in-declared-country needs the device's declared country")
        code = (claimed.strip().upper(),)
        return sea_region(code) if self.sea else countries_region(code)

    def describe(self) -> str:
        return f"{self.text} (bound: {self.bound.value}, liars: {self.liars})"


def claimed_region(code: str) -> Governed:
    """The region a declared country is judged by for REFUTED: the country as governed."""
    return governed_region((code.strip().upper(),), "claim")


def _codes(text: str) -> tuple[str, ...]:
    codes = tuple(sorted({c.strip().upper() for c in text.split(",") if c.strip()}))
    if not codes:
        raise PolicyError("name at least one country code, e.g. outside:CN,HK,MO")
    return codes


def parse_policy(
    text: str, bound: Bound | str = Bound.VACUUM, liars: Liars | str = DEFAULT_LIARS
) -> Policy:
    """Parse a policy text (see the module docstring). Raises PolicyError with what to fix."""
    bound = Bound(bound)
    try:
        f = check_liars(liars)
    except ValueError as exc:
        raise PolicyError(str(exc)) from exc
    raw = text.strip()
    kind, _, arg = raw.partition(":")
    kind = kind.strip().lower()
    try:
        if kind in ("in-declared-country", "in-declared-country+sea") and not arg:
            sea = kind.endswith("+sea")
            return Policy(text=kind, allowed=None, bound=bound, liars=f, sea=sea)
        if kind == "outside":
            codes = _codes(arg)
            return Policy(
                text=f"outside:{','.join(codes)}", allowed=_outside(codes), bound=bound, liars=f
            )
        if kind == "in":
            codes = _codes(arg)
            return Policy(
                text=f"in:{','.join(codes)}",
                allowed=countries_region(codes),
                bound=bound,
                liars=f,
            )
        if kind == "in+sea":
            codes = _codes(arg)
            return Policy(
                text=f"in+sea:{','.join(codes)}", allowed=sea_region(codes), bound=bound, liars=f
            )
        if kind == "within":
            parts = [p.strip() for p in arg.split(",")]
            if len(parts) != 3:
                raise PolicyError("write within:LAT,LON,RADIUS_KM, e.g. within:50.11,8.68,100")
            lat, lon, radius = (float(p) for p in parts)
            return Policy(
                text=f"within:{lat},{lon},{radius}",
                allowed=Disc(lat, lon, radius),
                bound=bound,
                liars=f,
            )
    except PolicyError:
        raise
    except ValueError as exc:
        raise PolicyError(f"policy {text!r}: {exc}") from exc
    raise PolicyError(
        f"unknown policy {text!r}: use outside:CC,..., in:CC,..., in+sea:CC,..., "
        "within:LAT,LON,RADIUS_KM, in-declared-country or in-declared-country+sea"
    )
