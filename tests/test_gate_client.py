"""The gate client and CLI against a REAL HTTP server on 127.0.0.1 (gate_verifier_stub)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gate_verifier_stub import POLICY, VERIFIER, FakeVerifier, dead_url, serve_verifier
from lightfence.cli.app import app
from lightfence.core.kinds import VerdictKind
from lightfence.crypto.keys import SigningKey
from lightfence.gate.client import (
    GateState,
    GateStateError,
    check_device,
    fetch_token,
    read_decision_log,
)
from lightfence.gate.decision import Answer, GateMode, GatePolicy, SourceStatus
from lightfence.gate.issuer import token_for_latest_verdict

DEVICE = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def verifier() -> Iterator[tuple[str, FakeVerifier]]:
    with serve_verifier() as served:
        yield served


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "verifier.pub"
    path.write_text(f"# the verifier's key\n{VERIFIER.public_bytes.hex()}\n")
    return path


CLOSED = GatePolicy()


def _check(url: str, state: GateState, policy: GatePolicy = CLOSED) -> Answer:
    return check_device(
        DEVICE,
        lambda: fetch_token(url, DEVICE, connect_timeout_s=1, read_timeout_s=2),
        verifier_public_keys=[VERIFIER.public_bytes],
        policy=policy,
        state=state,
    ).answer


def test_fetch_allowed_then_verdict_flips_to_refuted(
    verifier: tuple[str, FakeVerifier], tmp_path: Path
) -> None:
    url, fake = verifier
    state = GateState(tmp_path / "state")
    fake.verdicts[DEVICE] = VerdictKind.VERIFIED
    assert _check(url, state) is Answer.ALLOWED
    fake.verdicts[DEVICE] = VerdictKind.REFUTED
    assert _check(url, state, GatePolicy(mode=GateMode.FAIL_OPEN, grace_s=3600)) is Answer.DENIED
    assert fake.requests == [f"/devices/{DEVICE}/token"] * 2
    log = list(read_decision_log(state.log_path))
    assert [e["answer"] for e in log] == ["allowed", "denied"]
    assert log[1]["reason"] == "verdict-refuted" and log[1]["verdict"] == "REFUTED"
    assert isinstance(log[1]["token"], str) and log[1]["token"].startswith("lf1.")


def test_verifier_down_policy_decides(tmp_path: Path) -> None:
    state = GateState(tmp_path / "state")
    fetched = fetch_token(dead_url(), DEVICE, connect_timeout_s=1)
    assert fetched.status is SourceStatus.UNAVAILABLE
    assert _check(dead_url(), state) is Answer.DENIED
    entry = list(read_decision_log(state.log_path))[-1]
    assert entry["reason"] == "no-token" and entry["source_status"] == "unavailable"


def test_verifier_down_after_a_verified_token_fail_open_grace(
    verifier: tuple[str, FakeVerifier], tmp_path: Path
) -> None:
    import time

    url, fake = verifier
    state = GateState(tmp_path / "state")
    fake.verdicts[DEVICE] = VerdictKind.VERIFIED
    fake.now_unix_s = time.time() - 400  # the token it serves expired 100 s ago
    assert _check(url, state) is Answer.DENIED  # fail-closed: expired
    dead = dead_url()
    assert _check(dead, state, GatePolicy(mode=GateMode.FAIL_OPEN, grace_s=3600)) is Answer.ALLOWED
    assert _check(dead, state, GatePolicy(mode=GateMode.FAIL_OPEN, grace_s=10)) is Answer.DENIED
    reasons = [e["reason"] for e in read_decision_log(state.log_path)]
    assert reasons == ["token-expired", "grace", "grace-exhausted"]


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (503, b"down for maintenance", {}, "no-token"),
        (404, b"{}", {}, "no-verdict"),
        (302, b"", {"Location": "http://127.0.0.2:1/elsewhere"}, "no-token"),
        (200, b'{"token": "lf1.not.atoken"}', {}, "token-malformed"),
        (200, b"x" * 100_000, {}, "token-malformed"),
    ],
)
def test_odd_verifier_answers_deny(
    verifier: tuple[str, FakeVerifier],
    tmp_path: Path,
    status: int,
    body: bytes,
    headers: dict[str, str],
    expected: str,
) -> None:
    url, fake = verifier
    fake.raw[DEVICE] = (status, body, headers)
    state = GateState(tmp_path / "state")
    assert _check(url, state) is Answer.DENIED
    assert list(read_decision_log(state.log_path))[-1]["reason"] == expected
    assert len(fake.requests) == 1  # no redirect followed, no retry


def test_token_signed_by_another_key_is_denied(
    verifier: tuple[str, FakeVerifier], tmp_path: Path
) -> None:
    url, fake = verifier
    other = SigningKey.from_seed(bytes(32))
    import time

    text = token_for_latest_verdict(DEVICE, VerdictKind.VERIFIED, POLICY, other, time.time(), 300)
    fake.raw[DEVICE] = (200, json.dumps({"token": text}).encode(), {})
    state = GateState(tmp_path / "state")
    assert _check(url, state) is Answer.DENIED
    assert list(read_decision_log(state.log_path))[-1]["reason"] == "token-unknown-key"


def test_unwritable_state_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(GateStateError, match="--state-dir"):
        GateState(blocker / "state")


runner = CliRunner()


def _cli(*args: str) -> tuple[int, dict[str, object]]:
    result = runner.invoke(app, ["gate", "check", *args])
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else {}


def test_cli_check_exit_codes(
    verifier: tuple[str, FakeVerifier], tmp_path: Path, key_file: Path
) -> None:
    url, fake = verifier
    common = ["--device", DEVICE, "--verifier-key", str(key_file)]
    common += ["--state-dir", str(tmp_path / "s")]
    fake.verdicts[DEVICE] = VerdictKind.VERIFIED
    code, out = _cli(*common, "--verifier", url)
    assert (code, out["answer"], out["reason"]) == (0, "allowed", "verified")
    fake.verdicts[DEVICE] = VerdictKind.UNVERIFIED
    code, out = _cli(*common, "--verifier", url)
    assert (code, out["answer"], out["reason"]) == (1, "denied", "verdict-unverified")
    # No token now: the cached UNVERIFIED one is the newest authentic evidence and still rules.
    code, out = _cli(*common, "--token", str(tmp_path / "missing.token"))
    assert (code, out["reason"], out["source_status"]) == (1, "verdict-unverified", "unavailable")
    fresh_state = ["--state-dir", str(tmp_path / "s2")]
    code, out = _cli(*common, *fresh_state, "--token", str(tmp_path / "missing.token"))
    assert (code, out["reason"]) == (1, "no-token")
    assert len(list(read_decision_log(tmp_path / "s" / "decisions.jsonl"))) == 3


def test_cli_check_from_token_file(tmp_path: Path, key_file: Path) -> None:
    import time

    token_file = tmp_path / "t"
    token_file.write_text(
        token_for_latest_verdict(DEVICE, VerdictKind.VERIFIED, POLICY, VERIFIER, time.time(), 60)
    )
    code, out = _cli(
        "--device", DEVICE, "--verifier-key", str(key_file), "--token", str(token_file),
        "--state-dir", str(tmp_path / "s"), "--policy", "outside:CN,HK,MO",
    )  # fmt: skip
    assert (code, out["answer"]) == (0, "allowed")


def test_cli_usage_errors_exit_2_without_traceback(tmp_path: Path, key_file: Path) -> None:
    base = ["gate", "check", "--verifier-key", str(key_file), "--state-dir", str(tmp_path)]
    for extra in (
        ["--device", "nothex", "--verifier", "http://127.0.0.1:1"],
        ["--device", DEVICE],  # neither --token nor --verifier
        ["--device", DEVICE, "--verifier", "ftp://x"],
        ["--device", DEVICE, "--verifier", "http://127.0.0.1:1", "--grace", "5"],  # closed+grace
    ):
        result = runner.invoke(app, base + extra)
        assert result.exit_code == 2, (extra, result.output)
        assert "Traceback" not in result.output


def test_cli_policy_options_and_key_forms(
    verifier: tuple[str, FakeVerifier], tmp_path: Path
) -> None:
    """--policy with --bound/--liars or one canonical text; --verifier-key as bare hex or as
    the JSON GET /verifier/key serves. The stub issues `outside:CN,HK,MO (..., liars: 1)`."""
    url, fake = verifier
    fake.verdicts[DEVICE] = VerdictKind.VERIFIED
    served = tmp_path / "key.json"
    served.write_text(
        json.dumps({"public_key": VERIFIER.public_bytes.hex(), "key_id": VERIFIER.key_id})
    )
    for key in (VERIFIER.public_bytes.hex(), str(served)):
        base = ["--device", DEVICE, "--verifier", url, "--verifier-key", key]
        base += ["--state-dir", str(tmp_path / "s")]
        for policy, code, detail in (
            (["--policy", "outside:MO,HK,CN"], 0, ""),
            (["--policy", "outside:CN,HK,MO", "--bound", "vacuum", "--liars", "1"], 0, ""),
            (["--policy", "outside:CN,HK,MO (bound: fibre, liars: auto)"], 0, ""),
            (["--policy", "outside:CN,HK,MO", "--liars", "2"], 1, "the operator requires 2"),
            (["--policy", "outside:CN,HK,MO,RU"], 1, "does not exclude RU"),
        ):
            got, out = _cli(*base, *policy)
            assert (got, out["answer"]) == (code, ["allowed", "denied"][code]), (policy, out)
            assert detail in str(out["detail"])
    # Without --verifier-key the key comes from $LIGHTFENCE_VERIFIER_KEY (as for onboarding).
    result = runner.invoke(
        app,
        ["gate", "check", "--device", DEVICE, "--verifier", url, "--state-dir", str(tmp_path)],
        env={"LIGHTFENCE_VERIFIER_KEY": str(served)},
    )
    assert (result.exit_code, json.loads(result.stdout)["answer"]) == (0, "allowed")


def test_cli_bad_policy_options_exit_2(tmp_path: Path, key_file: Path) -> None:
    base = ["gate", "check", "--device", DEVICE, "--verifier", "http://127.0.0.1:1"]
    base += ["--verifier-key", str(key_file), "--state-dir", str(tmp_path)]
    for extra, message in (
        (["--liars", "1"], "give --policy too"),
        (["--bound", "fibre"], "give --policy too"),
        (["--policy", "outside:CN", "--liars", "-1"], "liars must be"),
        (["--policy", "outside:CN", "--liars", "lots"], "liars must be"),
        (["--policy", "outside:CN (bound: fibre)", "--bound", "vacuum"], "but bound is given as"),
        (["--policy", "outside:CN (locates: gpu)", "--require", "key"], "but locates is given as"),
        (["--policy", "nowhere"], "unknown policy"),
        (["--policy", "in:DE (colour: red)"], "is not one of"),
    ):
        result = runner.invoke(app, base + extra)
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.output, (extra, result.output)
        assert "Traceback" not in result.output


def test_cli_bad_verifier_key_is_unknown_and_logged(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key\n")
    code, out = _cli(
        "--device", DEVICE, "--verifier-key", str(bad), "--verifier", "http://127.0.0.1:1",
        "--state-dir", str(tmp_path / "s"),
    )  # fmt: skip
    assert (code, out["answer"], out["reason"]) == (2, "unknown", "verifier-key-unusable")
    (entry,) = read_decision_log(tmp_path / "s" / "decisions.jsonl")
    assert entry["answer"] == "unknown"


def test_cli_unwritable_log_gives_no_answer_but_unknown(
    verifier: tuple[str, FakeVerifier], tmp_path: Path, key_file: Path
) -> None:
    url, fake = verifier
    fake.verdicts[DEVICE] = VerdictKind.VERIFIED
    state = tmp_path / "s"
    (state / "tokens").mkdir(parents=True)
    (state / "decisions.jsonl").mkdir()  # a directory where the log should be: cannot append
    code, out = _cli(
        "--device", DEVICE, "--verifier-key", str(key_file), "--verifier", url,
        "--state-dir", str(state),
    )  # fmt: skip
    assert (code, out["answer"], out["reason"]) == (2, "unknown", "log-unwritable")


def test_audit_backs_real_decisions_and_flags_edited_ones(
    verifier: tuple[str, FakeVerifier], tmp_path: Path, key_file: Path
) -> None:
    url, fake = verifier
    state = GateState(tmp_path / "state")
    fake.verdicts[DEVICE] = VerdictKind.VERIFIED
    assert _check(url, state) is Answer.ALLOWED
    fake.verdicts[DEVICE] = VerdictKind.REFUTED
    assert _check(url, state) is Answer.DENIED
    audit = ["gate", "audit", str(state.log_path), "--verifier-key", str(key_file)]
    result = runner.invoke(app, audit)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["backed"] == 1
    # An operator turns the REFUTED denial into an allowed entry: the token betrays it.
    lines = state.log_path.read_text().splitlines()
    edited = json.loads(lines[1]) | {"answer": "allowed", "reason": "verified"}
    state.log_path.write_text(lines[0] + "\n" + json.dumps(edited) + "\n")
    result = runner.invoke(app, audit)
    assert result.exit_code == 1
    (finding,) = json.loads(result.stdout)["findings"]
    assert finding["line"] == 2 and "REFUTED" in finding["problem"]


def test_cli_several_devices_one_line_each_worst_exit_code(
    verifier: tuple[str, FakeVerifier], tmp_path: Path, key_file: Path
) -> None:
    url, fake = verifier
    other = "f" * 32
    fake.verdicts.update({DEVICE: VerdictKind.VERIFIED, other: VerdictKind.INCONSISTENT})
    args = ["gate", "check", "--device", DEVICE, "--device", other, "--verifier", url]
    args += ["--verifier-key", str(key_file), "--state-dir", str(tmp_path / "s")]
    result = runner.invoke(app, args)
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert [(x["device_id"], x["answer"]) for x in lines] == [
        (DEVICE, "allowed"),
        (other, "denied"),
    ]
    assert result.exit_code == 1


def test_a_verifier_that_accepts_but_never_answers_is_unavailable(tmp_path: Path) -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel completes the handshake; nobody ever reads or answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        fetched = fetch_token(url, DEVICE, connect_timeout_s=1, read_timeout_s=0.2)
    assert fetched.status is SourceStatus.UNAVAILABLE and "Timeout" in fetched.detail


def test_proxy_settings_in_the_environment_are_ignored(
    verifier: tuple[str, FakeVerifier], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate talks to the verifier URL it is given and to nothing else, not even a proxy."""
    url, fake = verifier
    fake.verdicts[DEVICE] = VerdictKind.VERIFIED
    with serve_verifier() as (proxy_url, proxy):
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        assert _check(url, GateState(tmp_path / "s")) is Answer.ALLOWED
    assert proxy.requests == [] and len(fake.requests) == 1
