"""eval.liars on the shipped data: K liars fool f = 0 and never f >= K."""

from __future__ import annotations

from functools import cache

import pytest
from typer.testing import CliRunner

from lightfence.cli import app
from lightfence.core.policy import parse_policy
from lightfence.eval.liars import LiarSummary, evaluate_liars
from lightfence.eval.verdicts import Case, honest_cases, relay_cases
from lightfence.rttdata import load_dataset


@cache
def _cases() -> tuple[list[Case], list[Case]]:
    data = load_dataset(None)
    # Every 8th relay case and honest target keeps the test fast and still spans the data.
    return honest_cases(data)[::8], relay_cases(data, ("CN", "HK", "MO"))[::8]


def _run(liars: int, attack: int) -> LiarSummary:
    honest, relays = _cases()
    return evaluate_liars(honest, relays, parse_policy("outside:CN,HK,MO"), liars, attack, 0.0)


def test_one_liar_fools_the_plain_engine_on_real_data() -> None:
    plain = _run(0, 1)
    assert plain.trials == len(_cases()[1]) > 0
    assert plain.false_verified > 0
    assert plain.to_json()["verified_lost_to_liar_tolerance"] == 0


def test_k_liars_never_verify_when_tolerated() -> None:
    for k in (1, 2):
        result = _run(k, k)
        assert result.false_verified == 0
        assert result.honest_verified <= result.honest_verified_at_0
        body = result.to_json()
        assert body["liar_trials"] == result.trials
        assert body["liar_false_verified"] == 0


@pytest.mark.parametrize("args", [["--liars", "-1"], ["--attack-liars", "-2"], ["--liars", "many"]])
def test_eval_liar_options_reject_bad_values(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["eval", *args])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
