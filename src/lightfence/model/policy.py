"""One policy value: what a VERIFIED verdict promises, as a canonical, hashable structure.

A policy names the allowed region, the speed bound, how many lying landmarks a verdict must
survive and what it must locate. Verifier, tokens, gate, CLI and API parse a policy text once
into a `PolicySpec` and compare those, never display strings. The geometry behind a spec (the
regions themselves) is core.policy's; this module is pure text and logic, so the gate and the
agent can use it without loading any map.

Text form (`parse_policy_spec`; case and spaces are free, codes may come in any order):

    REGION [(bound: vacuum|fibre, liars: N|auto, locates: key|gpu)]

    REGION   outside:CC,...  in:CC,...  in+sea:CC,...  within:LAT,LON,RADIUS_KM
             in-declared-country  in-declared-country+sea          (core.policy explains each)

The canonical text (`PolicySpec.canonical_text`) lists the codes sorted, always states bound and
liars, and states locates only when it is `gpu`, e.g. `outside:CN,HK,MO (bound: vacuum, liars:
1)`. So the display form the verifier has always shown, `in:DE (bound: vacuum)`, parses too.

`satisfies(have, need)`: a VERIFIED verdict under `have` implies one under `need`. Allowed only
where that is sound: the same region or one inside it (see `region_shortfall`), a bound at least
as strict (vacuum satisfies fibre, never the reverse), at least as many tolerated liars, and at
least what `need` locates.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal

from lightfence.model.trust import Locates
from lightfence.units import Bound

Liars = int | Literal["auto"]
"""Lying landmarks a verdict must survive: a count, or 'auto' (core.robust: 1 for a device
measured by at least 4 landmarks, else 0)."""

DEFAULT_LIARS: Liars = "auto"
"""The one default liar rule, shared by the verifier, `verify`, `eval`, `coverage`, `plan` and
every Policy: what planning assumes is what a deployment will verify with."""

MAX_LIARS = 1000
"""More liars than any deployment has landmarks; a larger count is a typo."""

QUALIFIERS = ("bound", "liars", "locates")

MAX_POLICY_CHARS = 255
"""Longest policy text a verdict token carries (gate.token): a licence whose canonical text could
be longer (about 73 country codes) is refused, since no token could ever be issued for it."""


class PolicyError(ValueError):
    """A policy text that cannot be understood."""


class RegionKind(StrEnum):
    OUTSIDE = "outside"
    """Anywhere except these countries as governed (land, waters, sea, islands, claims)."""
    IN = "in"
    """Inside these countries' land."""
    IN_SEA = "in+sea"
    """Inside these countries' land or territorial sea."""
    WITHIN = "within"
    """Within a distance of a licensed site."""
    IN_DECLARED = "in-declared-country"
    """Inside the land of whatever country the device declares."""
    IN_DECLARED_SEA = "in-declared-country+sea"
    """The same, or in that country's territorial sea."""


_COUNTRY_KINDS = (RegionKind.OUTSIDE, RegionKind.IN, RegionKind.IN_SEA)
_CODE = re.compile(r"[A-Z]{2}")
_QUALIFIED = re.compile(r"^(?P<region>[^()]*?)\s*\((?P<quals>[^()]*)\)\s*$")


def check_liars(liars: object) -> Liars:
    """A tolerated-liar setting: a count >= 0 or 'auto'. Raises ValueError with what to write."""
    if isinstance(liars, str):
        text = liars.strip().lower()
        if text == "auto":
            return "auto"
        if text.isascii() and text.isdigit() and int(text) <= MAX_LIARS:
            return int(text)
    elif isinstance(liars, int) and not isinstance(liars, bool) and 0 <= liars <= MAX_LIARS:
        return liars
    raise ValueError(f"liars must be 'auto' or a whole number from 0 to {MAX_LIARS}, not {liars!r}")


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PolicyError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise PolicyError(f"{what} must be a finite number, got {text!r}")
    return value + 0.0  # -0.0 -> 0.0: one canonical text per value


@dataclass(frozen=True)
class PolicySpec:
    """A parsed policy. Equal specs mean the same policy; build with `parse_policy_spec`."""

    kind: RegionKind
    codes: tuple[str, ...] = ()
    """Sorted, distinct ISO alpha-2 codes (outside/in/in+sea only)."""
    disc: tuple[float, float, float] | None = None
    """(lat_deg, lon_deg, radius_km) of a `within:` policy."""
    bound: Bound = Bound.VACUUM
    liars: Liars = DEFAULT_LIARS
    locates: Locates = Locates.KEY
    """What a VERIFIED verdict under this policy locates (a token) or must locate (a licence)."""

    def __post_init__(self) -> None:
        kind = RegionKind(self.kind)
        if kind in _COUNTRY_KINDS:
            if not self.codes or list(self.codes) != sorted(set(self.codes)):
                raise PolicyError(f"{kind.value}: codes must be distinct, sorted and at least one")
            for code in self.codes:
                if not _CODE.fullmatch(code):
                    raise PolicyError(
                        f"country code {code!r} is not ISO 3166-1 alpha-2 (two letters, e.g. DE)"
                    )
        elif self.codes:
            raise PolicyError(f"{kind.value} takes no country codes")
        if kind is RegionKind.WITHIN:
            if self.disc is None:
                raise PolicyError("write within:LAT,LON,RADIUS_KM, e.g. within:50.11,8.68,100")
            lat, lon, radius = self.disc
            if not all(isinstance(v, float) and math.isfinite(v) for v in self.disc):
                raise PolicyError("within: latitude, longitude and radius must be finite numbers")
            if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 360.0):  # as geo.sphere allows
                raise PolicyError(f"within: ({lat}, {lon}) is not a latitude/longitude in degrees")
            if not radius > 0.0:
                raise PolicyError(f"within: radius {radius} km must be positive")
        elif self.disc is not None:
            raise PolicyError(f"{kind.value} takes no disc")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "codes", tuple(self.codes))  # hashable whatever was passed
        if self.disc is not None:  # -0.0 -> 0.0: one canonical text per value
            object.__setattr__(self, "disc", tuple(v + 0.0 for v in self.disc))
        object.__setattr__(self, "bound", Bound(self.bound))
        object.__setattr__(self, "locates", Locates(self.locates))
        try:
            object.__setattr__(self, "liars", check_liars(self.liars))
        except ValueError as exc:
            raise PolicyError(str(exc)) from None

    @property
    def region_text(self) -> str:
        """The region part alone, canonical: `outside:CN,HK,MO`, `within:50.1,8.6,100.0`."""
        if self.kind in _COUNTRY_KINDS:
            return f"{self.kind.value}:{','.join(self.codes)}"
        if self.disc is not None:
            return f"{self.kind.value}:{','.join(repr(v) for v in self.disc)}"
        return self.kind.value

    def canonical_text(self, *, with_locates: bool = True) -> str:
        """The one text of this spec; `parse_policy_spec` gives the spec back.

        `with_locates=False` leaves locates out (tokens carry it in a field of their own)."""
        quals = f"bound: {self.bound.value}, liars: {self.liars}"
        if with_locates and self.locates is not Locates.KEY:
            quals += f", locates: {self.locates.value}"
        return f"{self.region_text} ({quals})"

    def __str__(self) -> str:
        return self.canonical_text()

    def longest_token_text(self) -> int:
        """Length of the longest text a token for a verdict under this spec can carry: its
        canonical text without locates, with the most liars a verdict can resolve to."""
        return len(replace(self, liars=MAX_LIARS).canonical_text(with_locates=False))

    def to_json_dict(self) -> dict[str, Any]:
        """The structure as JSON (API answers, decision logs); `from_json_dict` reads it back."""
        return {
            "kind": self.kind.value,
            "codes": list(self.codes),
            "disc": None if self.disc is None else list(self.disc),
            "bound": self.bound.value,
            "liars": self.liars,
            "locates": self.locates.value,
            "text": self.canonical_text(),
        }

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> PolicySpec:
        """The spec of a `to_json_dict` object; PolicyError for anything else."""
        try:
            disc = d.get("disc")
            return cls(
                kind=RegionKind(d["kind"]),
                codes=tuple(d.get("codes") or ()),
                disc=None if disc is None else (float(disc[0]), float(disc[1]), float(disc[2])),
                bound=Bound(d.get("bound", Bound.VACUUM.value)),
                liars=check_liars(d.get("liars", DEFAULT_LIARS)),
                locates=Locates(d.get("locates", Locates.KEY.value)),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            if isinstance(exc, PolicyError):
                raise
            raise PolicyError(f"not a policy structure: {exc}") from None


def split_policy_text(text: str) -> tuple[str, dict[str, str]]:
    """(region text, {qualifier: value}) of a policy text; PolicyError if it is malformed."""
    if not isinstance(text, str):
        raise PolicyError(f"a policy is a text, got {type(text).__name__}")
    raw = text.strip()
    match = _QUALIFIED.match(raw)
    if match is None:
        if "(" in raw or ")" in raw:
            raise PolicyError(
                f"policy {text!r}: write REGION (bound: vacuum, liars: 1), "
                "with the qualifiers in one pair of parentheses at the end"
            )
        return raw, {}
    quals: dict[str, str] = {}
    for part in match["quals"].split(","):
        key, sep, value = part.partition(":")
        key = key.strip().lower()
        if not sep or key not in QUALIFIERS or not value.strip():
            raise PolicyError(
                f"policy {text!r}: {part.strip()!r} is not one of "
                "bound: vacuum|fibre, liars: N|auto, locates: key|gpu"
            )
        if key in quals:
            raise PolicyError(f"policy {text!r} states {key} twice")
        quals[key] = value.strip().lower()
    return match["region"], quals


def _region(raw: str) -> tuple[RegionKind, tuple[str, ...], tuple[float, float, float] | None]:
    kind_text, _, arg = raw.strip().partition(":")
    try:
        kind = RegionKind(kind_text.strip().lower())
    except ValueError:
        raise PolicyError(
            f"unknown policy {raw.strip()!r}: use outside:CC,..., in:CC,..., in+sea:CC,..., "
            "within:LAT,LON,RADIUS_KM, in-declared-country or in-declared-country+sea"
        ) from None
    if kind in _COUNTRY_KINDS:
        if not arg.isascii():  # "ı".upper() is "I": only ASCII is case-folded here
            raise PolicyError(f"country codes are ASCII letters, got {arg.strip()!r}")
        codes = tuple(sorted({c.strip().upper() for c in arg.split(",") if c.strip()}))
        if not codes:
            raise PolicyError(f"name at least one country code, e.g. {kind.value}:CN,HK,MO")
        return kind, codes, None
    if kind is RegionKind.WITHIN:
        parts = [p.strip() for p in arg.split(",")]
        if len(parts) != 3:
            raise PolicyError("write within:LAT,LON,RADIUS_KM, e.g. within:50.11,8.68,100")
        lat, lon, radius = (
            _number(p, w) for p, w in zip(parts, ("latitude", "longitude", "radius"), strict=True)
        )
        return kind, (), (lat, lon, radius)
    if arg.strip():
        raise PolicyError(f"{kind.value} takes nothing after it, got {raw.strip()!r}")
    return kind, (), None


def _merge(name: str, stated: str | None, given: object | None) -> str | None:
    """A qualifier's value from the text or an explicit argument; PolicyError if they differ."""
    if given is None:
        return stated
    given_text = str(getattr(given, "value", given)).strip().lower()
    if stated is not None and stated != given_text:
        raise PolicyError(
            f"the policy text says {name}: {stated}, but {name} is given as {given_text}"
        )
    return given_text


def parse_policy_spec(
    text: str,
    bound: Bound | str | None = None,
    liars: Liars | str | None = None,
    locates: Locates | str | None = None,
    *,
    absent_liars: Liars = DEFAULT_LIARS,
) -> PolicySpec:
    """Parse a policy text (module docstring). `bound`, `liars`, `locates` given here must agree
    with what the text states; what neither states takes its default (vacuum, `absent_liars`,
    key). Raises PolicyError saying what to fix."""
    region, quals = split_policy_text(text)
    kind, codes, disc = _region(region)
    b = _merge("bound", quals.get("bound"), bound)
    n = _merge("liars", quals.get("liars"), liars)
    loc = _merge("locates", quals.get("locates"), locates)
    try:
        return PolicySpec(
            kind=kind,
            codes=codes,
            disc=disc,
            bound=Bound(b) if b is not None else Bound.VACUUM,
            liars=check_liars(n) if n is not None else absent_liars,
            locates=Locates(loc) if loc is not None else Locates.KEY,
        )
    except PolicyError:
        raise
    except ValueError as exc:
        raise PolicyError(f"policy {text!r}: {exc}") from None


# --- satisfies -------------------------------------------------------------------------------


def region_shortfall(have: PolicySpec, need: PolicySpec) -> str | None:
    """None when every position `have` allows is one `need` allows; else why not, in a sentence.

    Sound inclusions only, from what each region means (docs/regions.md), never from polygons:
    `outside:` with a superset of the codes (the countries as governed are a union of each one's,
    so avoiding more countries avoids these too); `in:` or `in+sea:` with a subset of the codes,
    land within land-or-sea (`in:` within `in+sea:`, `in-declared-country` within its `+sea`, never
    the reverse). Anything else, discs included, must be equal.
    """
    h, n = set(have.codes), set(need.codes)
    if have.kind is RegionKind.OUTSIDE and need.kind is RegionKind.OUTSIDE:
        if n <= h:
            return None
        return (
            f"token region {have.region_text} does not exclude {','.join(sorted(n - h))}, "
            f"the operator requires {need.region_text}"
        )
    land_or_sea = (RegionKind.IN, RegionKind.IN_SEA)
    if have.kind in land_or_sea and need.kind in land_or_sea:
        sea_ok = not (have.kind is RegionKind.IN_SEA and need.kind is RegionKind.IN)
        if sea_ok and h <= n:
            return None
    elif (
        have.kind is RegionKind.IN_DECLARED and need.kind is RegionKind.IN_DECLARED_SEA
    ) or have == replace(need, bound=have.bound, liars=have.liars, locates=have.locates):
        return None
    return f"token region is {have.region_text}, the operator requires {need.region_text}"


def liars_rank(liars: Liars) -> float:
    """Orders liar settings by what surviving them proves: 0 < auto < 1 < 2 ...

    'auto' resolves per device (1 with 4 or more landmarks, else 0), which a spec that says
    'auto' does not tell. So surviving 'auto' proves at least 0 and is proved by 1 or more: it
    ranks between them, and each side of a comparison is read conservatively.
    """
    return 0.5 if liars == "auto" else float(liars)


def _liars_text(liars: Liars) -> str:
    if liars == "auto":
        return "auto (0, or 1 with 4 or more landmarks) lying landmarks"
    return f"{liars} lying landmark{'' if liars == 1 else 's'}"


def shortfalls(have: PolicySpec, need: PolicySpec) -> dict[str, str]:
    """What `have` lacks to satisfy `need`, one sentence per component that falls short
    (region, bound, liars, locates); empty when it satisfies."""
    out: dict[str, str] = {}
    region = region_shortfall(have, need)
    if region is not None:
        out["region"] = region
    if have.bound is Bound.FIBRE and need.bound is Bound.VACUUM:
        # A fibre cap is smaller than a vacuum one: a fibre VERIFIED does not imply a vacuum one.
        out["bound"] = "token bound is fibre, the operator requires vacuum"
    if liars_rank(have.liars) < liars_rank(need.liars):
        out["liars"] = (
            f"token tolerates {_liars_text(have.liars)}, the operator requires {need.liars}"
        )
    if have.locates.rank < need.locates.rank:
        out["locates"] = (
            f"the verdict locates the {have.locates.value}, the operator requires one that "
            f"locates the {need.locates.value} (GPU-signed rounds)"
        )
    return out


def satisfies(have: PolicySpec, need: PolicySpec) -> bool:
    """A VERIFIED verdict under `have` implies one under `need` (module docstring)."""
    return not shortfalls(have, need)
