"""A licence's policy is stored in canonical form; what a licence cannot carry is refused."""

from __future__ import annotations

import pytest

from lightfence.verifier.errors import BadInput
from lightfence.verifier.registry import Licence


def test_licence_policy_is_canonical() -> None:
    assert Licence(policy=" outside: mo,hk,cn ").validated().policy == "outside:CN,HK,MO"
    fibre = Licence(policy="in:DE (bound: fibre)", bound="fibre").validated()
    assert (fibre.policy, fibre.bound) == ("in:DE", "fibre")
    gpu = Licence(policy="in:DE (locates: gpu)", require_locates="gpu").validated()
    assert (gpu.policy, gpu.require_locates) == ("in:DE", "gpu")


@pytest.mark.parametrize(
    ("licence", "message"),
    [
        (Licence(policy="in:DE (liars: 2)"), "states no liars"),
        (Licence(policy="in:DE (bound: fibre)"), "bound is given as vacuum"),
        (Licence(policy="in:DE (locates: gpu)"), "require_locates says key"),
        (Licence(policy="in:DE (colour: red)"), "is not one of"),
    ],
)
def test_what_a_licence_cannot_carry_is_refused(licence: Licence, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        licence.validated()
