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

The text is parsed once into a `model.policy.PolicySpec` (canonical, hashable, comparable: what
tokens, the gate and the API use); this module adds the geometry a spec stands for.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from lightfence.geo.governed import Governed, LandAndSea
from lightfence.geo.regions import Complement, Countries, Disc, Region
from lightfence.model.policy import DEFAULT_LIARS, Liars, PolicySpec, RegionKind, parse_policy_spec
from lightfence.model.policy import PolicyError as PolicyError
from lightfence.units import Bound


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
    """The region as canonical text (PolicySpec.region_text), for display and evidence bundles."""
    allowed: Region | None
    """The allowed region A; None means 'the country the device declares'."""
    bound: Bound = Bound.VACUUM
    liars: Liars = DEFAULT_LIARS
    """Lying landmarks each verdict must survive: a count, or 'auto' (see core.robust)."""
    sea: bool = False
    """in-declared-country+sea: the declared country's territorial sea is allowed too."""
    spec: PolicySpec | None = None
    """The parsed policy this was built from (`parse_policy` always sets it)."""

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


def _allowed(spec: PolicySpec) -> Region | None:
    if spec.kind is RegionKind.OUTSIDE:
        return _outside(spec.codes)
    if spec.kind is RegionKind.IN:
        return countries_region(spec.codes)
    if spec.kind is RegionKind.IN_SEA:
        return sea_region(spec.codes)
    if spec.kind is RegionKind.WITHIN:
        assert spec.disc is not None  # PolicySpec checks it
        return Disc(*spec.disc)
    return None


def policy_of(spec: PolicySpec) -> Policy:
    """The Policy (with its region) a spec stands for. PolicyError for an unknown country."""
    try:
        allowed = _allowed(spec)
    except ValueError as exc:
        raise PolicyError(f"policy {spec.region_text!r}: {exc}") from exc
    return Policy(
        text=spec.region_text,
        allowed=allowed,
        bound=spec.bound,
        liars=spec.liars,
        sea=spec.kind is RegionKind.IN_DECLARED_SEA,
        spec=spec,
    )


def parse_policy(
    text: str, bound: Bound | str | None = None, liars: Liars | str | None = None
) -> Policy:
    """Parse a policy text (see the module docstring and model.policy). `bound` and `liars`, when
    given, must agree with what the text states. Raises PolicyError with what to fix."""
    return policy_of(parse_policy_spec(text, bound, liars))
