"""model.policy: one canonical policy structure, its text round trip, and `satisfies`."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lightfence.core.policy import parse_policy
from lightfence.model.policy import (
    Liars,
    PolicyError,
    PolicySpec,
    RegionKind,
    liars_rank,
    parse_policy_spec,
    satisfies,
    shortfalls,
)
from lightfence.model.trust import Locates
from lightfence.units import Bound

CODES = ("CN", "DE", "FR", "HK", "MO", "RU")

codes = st.sets(st.sampled_from(CODES), min_size=1).map(lambda s: tuple(sorted(s)))
liars: st.SearchStrategy[Liars] = st.one_of(st.just("auto"), st.integers(0, 3))
finite = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def specs(draw: st.DrawFn) -> PolicySpec:
    kind = draw(st.sampled_from(list(RegionKind)))
    country = kind in (RegionKind.OUTSIDE, RegionKind.IN, RegionKind.IN_SEA)
    disc = None
    if kind is RegionKind.WITHIN:
        disc = (
            draw(st.floats(-90, 90)) + 0.0,
            draw(st.floats(-180, 180)) + 0.0,
            draw(st.floats(0.001, 20000)),
        )
    return PolicySpec(
        kind=kind,
        codes=draw(codes) if country else (),
        disc=disc,
        bound=draw(st.sampled_from(list(Bound))),
        liars=draw(liars),
        locates=draw(st.sampled_from(list(Locates))),
    )


@given(specs())
def test_canonical_text_round_trips(p: PolicySpec) -> None:
    assert parse_policy_spec(p.canonical_text()) == p
    assert PolicySpec.from_json_dict(p.to_json_dict()) == p
    assert hash(parse_policy_spec(p.canonical_text())) == hash(p)
    # Without locates the text still names everything else.
    assert parse_policy_spec(p.canonical_text(with_locates=False)) == replace(
        p, locates=Locates.KEY
    )


@given(specs())
def test_satisfies_is_reflexive(p: PolicySpec) -> None:
    assert satisfies(p, p)
    assert shortfalls(p, p) == {}


@settings(max_examples=400)
@given(specs(), specs(), specs())
def test_satisfies_is_transitive(a: PolicySpec, b: PolicySpec, c: PolicySpec) -> None:
    if satisfies(a, b) and satisfies(b, c):
        assert satisfies(a, c), (a, b, c)


def _weaken(p: PolicySpec, data: st.DataObject) -> PolicySpec:
    """A spec that satisfies nothing more than `p` does: some component relaxed or kept."""
    bound = data.draw(st.sampled_from([p.bound, Bound.FIBRE]))
    lower: list[Liars] = [n for n in ("auto", 0, 1, 2, 3) if liars_rank(n) <= liars_rank(p.liars)]
    liars_ = data.draw(st.sampled_from(lower))
    locates = data.draw(st.sampled_from([p.locates, Locates.KEY]))
    codes_ = p.codes
    kind = p.kind
    if p.kind is RegionKind.OUTSIDE:
        codes_ = tuple(sorted(data.draw(st.sets(st.sampled_from(p.codes), min_size=1))))
    elif p.kind in (RegionKind.IN, RegionKind.IN_SEA):
        codes_ = tuple(sorted(set(p.codes) | data.draw(st.sets(st.sampled_from(CODES)))))
        kind = data.draw(st.sampled_from([p.kind, RegionKind.IN_SEA]))
    elif p.kind is RegionKind.IN_DECLARED:
        kind = data.draw(st.sampled_from([p.kind, RegionKind.IN_DECLARED_SEA]))
    return replace(p, kind=kind, codes=codes_, bound=bound, liars=liars_, locates=locates)


@given(specs(), st.data())
def test_weakening_chains_are_satisfied(p: PolicySpec, data: st.DataObject) -> None:
    q = _weaken(p, data)
    r = _weaken(q, data)
    assert satisfies(p, q) and satisfies(q, r) and satisfies(p, r)


@given(specs(), st.data())
def test_a_weaker_component_never_satisfies(need: PolicySpec, data: st.DataObject) -> None:
    """`have` equals `need` but for one component strictly weaker: never satisfies, and the
    shortfall names that component."""
    options = []
    if need.bound is Bound.VACUUM:
        options.append(("bound", replace(need, bound=Bound.FIBRE)))
    if need.liars == "auto":
        options.append(("liars", replace(need, liars=0)))
    elif need.liars >= 1:
        options.append(("liars", replace(need, liars=need.liars - 1)))
        options.append(("liars", replace(need, liars="auto")))
    if need.locates is Locates.GPU:
        options.append(("locates", replace(need, locates=Locates.KEY)))
    if need.kind is RegionKind.OUTSIDE and len(need.codes) > 1:
        options.append(("region", replace(need, codes=need.codes[1:])))
    if need.kind in (RegionKind.IN, RegionKind.IN_SEA) and len(need.codes) < len(CODES):
        extra = next(c for c in CODES if c not in need.codes)
        options.append(("region", replace(need, codes=tuple(sorted((*need.codes, extra))))))
    if need.kind is RegionKind.IN:
        options.append(("region", replace(need, kind=RegionKind.IN_SEA)))
    if need.kind is RegionKind.IN_DECLARED:
        options.append(("region", replace(need, kind=RegionKind.IN_DECLARED_SEA)))
    if need.kind is RegionKind.WITHIN:
        assert need.disc is not None
        lat, lon, radius = need.disc
        options.append(("region", replace(need, disc=(lat, lon, radius * 2))))
    if not options:
        return
    component, have = data.draw(st.sampled_from(options))
    assert not satisfies(have, need)
    assert component in shortfalls(have, need)


def test_same_region_whatever_its_spelling() -> None:
    need = parse_policy_spec("outside:CN,HK,MO")
    for text in ("outside:HK,MO,CN", " Outside : hk , mo,cn,CN ", "OUTSIDE:MO,CN,HK"):
        assert parse_policy_spec(text) == need
    assert parse_policy_spec("outside:CN,HK,MO (Bound: VACUUM, liars: AUTO)") == need


def test_sound_region_inclusions_only() -> None:
    p = parse_policy_spec
    assert satisfies(p("outside:CN,HK,MO,RU"), p("outside:CN,HK,MO"))
    assert not satisfies(p("outside:CN,HK"), p("outside:CN,HK,MO"))
    assert satisfies(p("in:DE"), p("in:DE,FR"))
    assert satisfies(p("in:DE"), p("in+sea:DE"))
    assert not satisfies(p("in+sea:DE"), p("in:DE"))  # the sea is not land
    assert not satisfies(p("in:DE,FR"), p("in:DE"))
    assert not satisfies(p("in:DE"), p("outside:CN"))  # true, but not decided from text
    assert not satisfies(p("in-declared-country"), p("in:DE"))  # which country is unknown
    assert satisfies(p("in-declared-country"), p("in-declared-country+sea"))
    assert not satisfies(p("within:50,8,100"), p("within:50,8,101"))  # discs must be equal


def test_refusals_say_what_differs() -> None:
    need = parse_policy_spec("outside:CN,HK,MO", "vacuum", "1")
    have = parse_policy_spec("outside:CN,HK,MO", "fibre", "0")
    assert shortfalls(have, need) == {
        "bound": "token bound is fibre, the operator requires vacuum",
        "liars": "token tolerates 0 lying landmarks, the operator requires 1",
    }
    assert shortfalls(parse_policy_spec("outside:CN"), parse_policy_spec("outside:CN,HK")) == {
        "region": "token region outside:CN does not exclude HK, the operator requires outside:CN,HK"
    }


def test_auto_liars_are_read_conservatively() -> None:
    p = parse_policy_spec
    assert satisfies(p("in:DE", liars="auto"), p("in:DE", liars="auto"))
    assert satisfies(p("in:DE", liars="auto"), p("in:DE", liars=0))
    assert not satisfies(p("in:DE", liars="auto"), p("in:DE", liars=1))  # auto may have been 0
    assert satisfies(p("in:DE", liars=1), p("in:DE", liars="auto"))
    assert not satisfies(p("in:DE", liars=0), p("in:DE", liars="auto"))  # auto may ask 1


def test_legacy_display_text_parses() -> None:
    # What verifiers issued before the structure: no liars stated.
    legacy = parse_policy_spec("in:DE (bound: vacuum)", absent_liars=0)
    assert legacy == PolicySpec(RegionKind.IN, ("DE",), bound=Bound.VACUUM, liars=0)
    assert parse_policy_spec("outside:CN (bound: fibre, liars: auto)").bound is Bound.FIBRE


@pytest.mark.parametrize(
    "text",
    [
        "",
        "in:",
        "in:DEU",
        "in:D1",
        "in:ıt",  # dotless i upper-cases to I: not silently Italy
        "somewhere:DE",
        "in-declared-country:DE",
        "within:1,2",
        "within:nan,8,100",
        "within:50,8,inf",
        "within:91,8,100",
        "within:50,8,-1",
        "in:DE (bound: light)",
        "in:DE (liars: -1)",
        "in:DE (liars: 1.5)",
        "in:DE (liars: ١)",  # a non-ASCII digit
        "in:DE (liars: 99999)",
        "in:DE (liars: 1, liars: 2)",
        "in:DE (colour: red)",
        "in:DE (bound: vacuum) (liars: 1)",
        "in:DE (bound: vacuum",
        "in:(DE)",
        "in:DE (locates: chip)",
    ],
)
def test_bad_texts_say_what_to_fix(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy_spec(text)


def test_options_must_agree_with_the_text() -> None:
    assert parse_policy_spec("in:DE (bound: fibre)", "fibre").bound is Bound.FIBRE
    with pytest.raises(PolicyError, match="says bound: fibre, but bound is given as vacuum"):
        parse_policy_spec("in:DE (bound: fibre)", Bound.VACUUM)
    with pytest.raises(PolicyError, match="liars"):
        parse_policy_spec("in:DE (liars: 2)", liars=1)


def test_core_policy_is_built_from_the_spec() -> None:
    policy = parse_policy("outside: mo,hk,cn", "vacuum", 1)
    assert policy.spec == parse_policy_spec("outside:CN,HK,MO", liars=1)
    assert policy.text == "outside:CN,HK,MO"
    assert policy.describe() == "outside:CN,HK,MO (bound: vacuum, liars: 1)"
    with pytest.raises(PolicyError, match="unknown country code 'XX'"):
        parse_policy("in:XX")


# --- satisfies against a model of what regions mean ------------------------------------------
# Places: each country's land, territorial sea and governed extras (islands, internal waters,
# disputed areas it claims), the high seas, and one private place per disc. A disc may cover any
# of the others (nothing here knows where it lies), so it is modelled as covering all of them.
# A verdict under `have` proves the device is in region(have); `satisfies` must only say yes
# where that region lies inside region(need) for every declared country and every landmark
# count, with a bound, liars and locates at least as strong.

_COUNTRIES = (*CODES, "XX")
_ZONES = ("land", "sea", "extra")
_EARTH = frozenset({(c, z) for c in _COUNTRIES for z in _ZONES} | {("high-sea", "")})


def _region(p: PolicySpec, declared: str) -> frozenset[tuple[str, str]]:
    def of(cs: tuple[str, ...], zones: tuple[str, ...]) -> frozenset[tuple[str, str]]:
        return frozenset((c, z) for c in cs for z in zones)

    if p.kind is RegionKind.OUTSIDE:
        return _EARTH - of(p.codes, _ZONES)
    if p.kind is RegionKind.IN:
        return of(p.codes, ("land",))
    if p.kind is RegionKind.IN_SEA:
        return of(p.codes, ("land", "sea"))
    if p.kind is RegionKind.IN_DECLARED:
        return of((declared,), ("land",))
    if p.kind is RegionKind.IN_DECLARED_SEA:
        return of((declared,), ("land", "sea"))
    return _EARTH | {("disc", repr(p.disc))}


def _resolved(liars: Liars, landmarks: int) -> int:
    return (1 if landmarks >= 4 else 0) if liars == "auto" else int(liars)


@settings(max_examples=400, deadline=None)
@given(specs(), specs())
def test_satisfies_only_what_the_regions_imply(have: PolicySpec, need: PolicySpec) -> None:
    if not satisfies(have, need):
        return
    for declared in _COUNTRIES:
        assert _region(have, declared) <= _region(need, declared), (have, need, declared)
    assert not (have.bound is Bound.FIBRE and need.bound is Bound.VACUUM)
    assert all(_resolved(have.liars, n) >= _resolved(need.liars, n) for n in range(8))
    assert have.locates.rank >= need.locates.rank
