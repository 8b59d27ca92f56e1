"""`lightfence gate check` and `lightfence gate label`: the operator's compliance gate.

Both print JSON and never a traceback. `check` exits 0 (allowed), 1 (denied) or 2 (unknown or
usage error); see lightfence.gate.decision and docs/gate.md.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from lightfence.crypto.tls import TlsConfigError
from lightfence.gate.audit import audit_log
from lightfence.gate.client import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_READ_TIMEOUT_S,
    GateState,
    GateStateError,
    VerifierClient,
    check_device,
    check_device_id,
    check_verifier_url,
    load_verifier_keys,
    read_decision_log,
    read_token_file,
)
from lightfence.gate.decision import (
    EXIT_UNKNOWN,
    Decision,
    Fetched,
    GateMode,
    GatePolicy,
    unknown_decision,
)
from lightfence.gate.kube import (
    LABEL_VERIFIED,
    HttpKubeAPI,
    KubeError,
    check_label_key,
    label_pass,
    load_device_map,
)
from lightfence.gate.token import DEFAULT_MAX_CLOCK_SKEW_S
from lightfence.model.bearer import BadApiToken
from lightfence.model.policy import PolicyError, PolicySpec, parse_policy_spec
from lightfence.model.trust import Locates
from lightfence.units import Bound

commands = typer.Typer()
"""This module's top-level commands; lightfence.cli.app loads it only to run one of them."""

gate = typer.Typer(
    help="The operator's compliance gate: may work start on this GPU? Read-only; no kill switch.",
    no_args_is_help=True,
)
commands.add_typer(gate, name="gate")

DEFAULT_STATE_DIR = "/var/lib/lightfence/gate"
STATE_ENV = "LIGHTFENCE_GATE_STATE"


class ModeOption(StrEnum):
    fail_closed = "fail-closed"
    fail_open = "fail-open"


VerifierKey = Annotated[
    str,
    typer.Option(
        "--verifier-key",
        envvar="LIGHTFENCE_VERIFIER_KEY",
        help="The verifier's Ed25519 public key: 64 hex digits, or a file holding them (one key "
        "per line) or the JSON that GET /verifier/key serves.",
    ),
]
Mode = Annotated[
    ModeOption,
    typer.Option("--mode", help="fail-closed: deny without a valid token. fail-open: use --grace."),
]
Grace = Annotated[
    float,
    typer.Option(
        "--grace", help="Fail-open only: seconds a VERIFIED token keeps allowing after it expires."
    ),
]
Skew = Annotated[
    float,
    typer.Option("--max-skew", help="Seconds a token's issued-at may lie in this host's future."),
]
ExpectedPolicy = Annotated[
    str | None,
    typer.Option(
        "--policy",
        help="Require a verdict under this policy or a stronger one, e.g. outside:CN,HK,MO, or "
        "a whole canonical text such as 'outside:CN,HK,MO (bound: vacuum, liars: 1)'.",
    ),
]
BoundOpt = Annotated[
    Bound | None,
    typer.Option(
        "--bound", help="With --policy: vacuum (default; fibre tokens deny) or fibre (both allow)."
    ),
]
LiarsOpt = Annotated[
    str | None,
    typer.Option(
        "--liars",
        help="With --policy: lying landmarks the verdict must have tolerated, a count or auto "
        "(default 0: any).",
    ),
]
Require = Annotated[
    Locates | None,
    typer.Option(
        "--require",
        help="What the verdict must locate: key (any; default) or gpu (GPU-signed rounds; "
        "docs/trust.md).",
    ),
]
StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help=f"Decision log and token cache. Default: ${STATE_ENV} or {DEFAULT_STATE_DIR}.",
    ),
]
Timeout = Annotated[
    float,
    typer.Option("--timeout", help="Seconds to wait for the verifier's answer."),
]


def _emit(obj: dict[str, Any]) -> None:
    typer.echo(json.dumps(obj, sort_keys=True))


def _fail(device_id: str, reason: str, detail: str) -> typer.Exit:
    """Print an 'unknown' answer (exit 2); the caller logs it first where it can."""
    _emit(unknown_decision(device_id, reason, detail, now_unix_s=time.time()).to_json_dict())
    return typer.Exit(EXIT_UNKNOWN)


def _state(state_dir: Path | None) -> GateState:
    return GateState(state_dir or Path(os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR))


def required_policy(
    text: str | None,
    bound: Bound | None = None,
    liars: str | None = None,
    require: Locates | None = None,
) -> PolicySpec | None:
    """The operator's required policy from --policy, --bound, --liars, --require; None without
    --policy. What neither the text nor an option states is the weakest requirement (liars 0,
    key) except the bound, which stays vacuum: a fibre verdict must be accepted explicitly."""
    if text is None:
        if bound is not None or liars is not None:
            raise typer.BadParameter("--bound and --liars qualify a --policy; give --policy too")
        return None
    try:
        return parse_policy_spec(text, bound, liars, require, absent_liars=0)
    except PolicyError as exc:
        raise typer.BadParameter(str(exc)) from None


def _policy(
    mode: ModeOption,
    grace: float,
    skew: float,
    expected: PolicySpec | None,
    require: Locates | None = None,
) -> GatePolicy:
    try:
        return GatePolicy(
            mode=GateMode(mode.value),
            grace_s=grace,
            max_clock_skew_s=skew,
            expected_policy=expected,
            required_locates=require or Locates.KEY,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@gate.command("check")
def check_cmd(
    device: Annotated[
        list[str],
        typer.Option("--device", help="Lightfence device id (32 hex digits); repeat for several."),
    ],
    verifier_key: VerifierKey,
    token: Annotated[
        Path | None, typer.Option("--token", help="Read the token from this file (one device).")
    ] = None,
    verifier: Annotated[
        str | None, typer.Option("--verifier", help="Fetch the token from this verifier URL.")
    ] = None,
    mode: Mode = ModeOption.fail_closed,
    grace: Grace = 0.0,
    max_skew: Skew = DEFAULT_MAX_CLOCK_SKEW_S,
    policy: ExpectedPolicy = None,
    bound: BoundOpt = None,
    liars: LiarsOpt = None,
    require: Require = None,
    state_dir: StateDir = None,
    timeout: Timeout = DEFAULT_READ_TIMEOUT_S,
) -> None:
    """May work start on these devices? One JSON line per device; exit 0 if all are allowed,
    else 1 (denied), or 2 if any answer is unknown."""
    try:
        for d in device:
            check_device_id(d)
        if verifier is not None:
            verifier = check_verifier_url(verifier)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if (token is None) == (verifier is None):
        raise typer.BadParameter("give exactly one of --token FILE or --verifier URL")
    if token is not None and len(device) != 1:
        raise typer.BadParameter("--token FILE holds one device's token; give one --device")
    if not 0 < timeout <= 60:
        raise typer.BadParameter("--timeout must be between 0 and 60 seconds")
    gate_policy = _policy(
        mode, grace, max_skew, required_policy(policy, bound, liars, require), require
    )
    try:
        state = _state(state_dir)
    except GateStateError as exc:
        raise _fail(device[0], "state-unusable", str(exc)) from None
    if token is not None:
        token_file = token
        only = _check_one(
            device[0], lambda _: read_token_file(token_file), verifier_key, gate_policy, state
        )
        decisions = [only]
    else:
        assert verifier is not None
        with _verifier_client(verifier, timeout) as client:
            decisions = [
                _check_one(d, client.fetch, verifier_key, gate_policy, state) for d in device
            ]
    for decision in decisions:
        _emit(decision.to_json_dict())
    raise typer.Exit(max(d.exit_code for d in decisions))


def _verifier_client(verifier: str, timeout_s: float) -> VerifierClient:
    # The verifier API token comes from $LIGHTFENCE_VERIFIER_TOKEN, never the command line.
    from lightfence.evidence.submit import read_token

    try:
        return VerifierClient(
            verifier,
            connect_timeout_s=min(timeout_s, DEFAULT_CONNECT_TIMEOUT_S),
            read_timeout_s=timeout_s,
            api_token=read_token(None),
        )
    except BadApiToken as exc:
        raise typer.BadParameter(f"$LIGHTFENCE_VERIFIER_TOKEN: {exc}") from None
    except TlsConfigError as exc:
        raise typer.BadParameter(str(exc)) from None


def _check_one(
    device: str,
    fetch: Callable[[str], Fetched],
    verifier_key: str,
    policy: GatePolicy,
    state: GateState,
) -> Decision:
    """One logged decision; an unknown one (also logged if possible) when the gate cannot decide."""
    try:
        keys = load_verifier_keys(verifier_key)
    except GateStateError as exc:
        decision = unknown_decision(
            device, "verifier-key-unusable", str(exc), now_unix_s=time.time()
        )
        try:
            state.append(decision)
        except GateStateError as log_exc:
            print(f"lightfence gate: {log_exc}", file=sys.stderr)
        return decision
    try:
        return check_device(
            device, lambda: fetch(device), verifier_public_keys=keys, policy=policy, state=state
        )
    except GateStateError as exc:
        # An unlogged decision is not given: auditability is the gate's whole purpose.
        return unknown_decision(device, "log-unwritable", str(exc), now_unix_s=time.time())


@gate.command("label")
def label_cmd(
    verifier: Annotated[str, typer.Option("--verifier", help="The verifier URL.")],
    verifier_key: VerifierKey,
    mode: Mode = ModeOption.fail_closed,
    grace: Grace = 0.0,
    max_skew: Skew = DEFAULT_MAX_CLOCK_SKEW_S,
    policy: ExpectedPolicy = None,
    bound: BoundOpt = None,
    liars: LiarsOpt = None,
    require: Require = None,
    state_dir: StateDir = None,
    timeout: Timeout = DEFAULT_READ_TIMEOUT_S,
    once: Annotated[
        bool, typer.Option("--once", help="One pass over the nodes, then exit.")
    ] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between passes.")] = 60.0,
    kube_url: Annotated[
        str | None,
        typer.Option("--kube-url", help="API server URL. Default: the in-cluster service account."),
    ] = None,
    kube_token_file: Annotated[
        Path | None, typer.Option("--kube-token-file", help="Bearer token file for --kube-url.")
    ] = None,
    kube_ca: Annotated[
        Path | None, typer.Option("--kube-ca", help="CA bundle for --kube-url (https).")
    ] = None,
    label: Annotated[
        str,
        typer.Option(
            "--label",
            help="Label key set to true|false. Prefer "
            "node-restriction.kubernetes.io/lightfence-verified: kubelets cannot set that one.",
        ),
    ] = LABEL_VERIFIED,
    device_map: Annotated[
        Path | None,
        typer.Option(
            "--device-map",
            help="Lines 'NODE DEVICE_ID[,...]' kept by the operator. Default: each node's "
            "lightfence.io/device-ids annotation (which its kubelet can edit).",
        ),
    ] = None,
) -> None:
    """Label each Kubernetes node lightfence.io/verified=true|false from the gate's answers."""
    try:
        verifier = check_verifier_url(verifier)
        check_label_key(label)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if interval < 1:
        raise typer.BadParameter("--interval must be at least 1 second")
    gate_policy = _policy(
        mode, grace, max_skew, required_policy(policy, bound, liars, require), require
    )
    try:
        state = _state(state_dir)
        kube = (
            HttpKubeAPI.in_cluster()
            if kube_url is None
            else HttpKubeAPI.from_url(kube_url, kube_token_file, kube_ca)
        )
    except (GateStateError, KubeError) as exc:
        typer.echo(f"lightfence gate label: {exc}", err=True)
        raise typer.Exit(EXIT_UNKNOWN) from None

    while True:
        try:
            # Re-read every pass so a ConfigMap update applies without a restart.
            mapping = None if device_map is None else load_device_map(device_map)
            with _verifier_client(verifier, timeout) as client:

                def check(device_id: str) -> Decision:
                    return _check_one(device_id, client.fetch, verifier_key, gate_policy, state)

                results = label_pass(kube, check, label_key=label, device_map=mapping)
        except KubeError as exc:
            typer.echo(f"lightfence gate label: {exc}", err=True)
            if once:
                raise typer.Exit(EXIT_UNKNOWN) from None
        else:
            for r in results:
                _emit(r.to_json_dict())
            if once:
                raise typer.Exit(0)
        time.sleep(interval)


@gate.command("audit")
def audit_cmd(
    log: Annotated[Path, typer.Argument(help="A gate decision log (decisions.jsonl).")],
    verifier_key: VerifierKey,
) -> None:
    """Re-check every allowed decision in a log against the verifier's key: exit 0 if all are
    backed by a VERIFIED token valid at that time, 1 if not, 2 if the log cannot be read."""
    try:
        keys = load_verifier_keys(verifier_key)
        entries = list(read_decision_log(log))
    except GateStateError as exc:
        raise typer.BadParameter(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"cannot read decision log {log}: {exc}") from None
    report = audit_log(entries, keys)
    _emit(report.to_json_dict())
    raise typer.Exit(0 if report.clean else 1)
