"""Start the demo's world: a verifier, the landmarks, the fleet enrolled, a relay per path.

Everything is a production component on 127.0.0.1: the verifier is the FastAPI app under
uvicorn, each landmark a `LandmarkServer` with its own key and landmark token that submits its
records over HTTP, the agents run `agent.measure.measure_all`. The only thing the demo adds is
`sim.emulate.RelayHub` between agents and landmarks; the verifier never sees it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lightfence.agent.measure import LandmarkResult, RetryPolicy, measure_all
from lightfence.crypto.keys import SigningKey
from lightfence.demo.gpu import DemoGpus, GpuRound
from lightfence.demo.scenario import (
    DEMO_POLICY,
    FLEET,
    HONEST_CHECKIN_S,
    LANDMARKS,
    RELAY_NEAR_LANDMARK_RTT_MS,
    SILENT_CHECKIN_S,
    DeviceSpec,
    LandmarkSite,
    Scenario,
)
from lightfence.demo.verifier_proc import VerifierProcess
from lightfence.identity.device import DeviceIdentity
from lightfence.landmark.gpu_server import GpuLandmarkProtocol, serve_gpu_rounds
from lightfence.landmark.server import LandmarkServer
from lightfence.model.registry import LandmarkEntry
from lightfence.model.trust import TrustLevel
from lightfence.protocol.gpu_session import GpuLandmarkEndpoint
from lightfence.protocol.landmark_session import LandmarkConfig, LandmarkEndpoint
from lightfence.protocol.record import MeasurementRecord
from lightfence.rttdata import Dataset, load_dataset
from lightfence.sim.emulate import RelayProcess, Site, path_rtt_ms, site_of
from lightfence.verifier.auth import Role, create_token
from lightfence.verifier.clock import now_ns
from lightfence.verifier.config import VerifierConfig
from lightfence.verifier.service import Service

ROUNDS = 8
"""Timed rounds per landmark session; the landmark keeps the fastest."""
AGENT_RETRY = RetryPolicy(attempts=3, attempt_timeout_s=6.0, backoff_s=0.2)
Step = Callable[[str], None]
API_TIMEOUT_S = 180.0
"""Generous: the verifier answers its first requests only after loading the Natural Earth
borders, which takes many seconds on a busy 2-core machine."""
QUIET_LOGGERS = ("lightfence.landmark", "lightfence.verifier")


@dataclass(frozen=True)
class _Impostor(DeviceIdentity):
    """A clone's identity: its own key, but it announces the enrolled device's id."""

    claimed_device_id: str = ""

    @property
    def device_id(self) -> str:
        return self.claimed_device_id


@dataclass
class RunningLandmark:
    site: LandmarkSite
    key: SigningKey
    server: LandmarkServer
    lat: float
    lon: float
    gpu_address: tuple[str, int] | None = None
    """Its GPU-round socket (landmark/gpu_server.py), when started."""


@dataclass
class FleetDevice:
    spec: DeviceSpec
    identity: DeviceIdentity
    """The enrolled identity."""
    answer_key: SigningKey
    """The key that answers challenges (not the enrolled one for a clone)."""
    answer_identity: DeviceIdentity
    entries: list[LandmarkEntry] = field(default_factory=list)
    gpu_entries: list[LandmarkEntry] = field(default_factory=list)
    """Landmarks whose GPU-round socket this device's GPU reaches (through its path's relay)."""
    """The landmark registry this agent is given: every address is its path's relay."""

    @property
    def device_id(self) -> str:
        return self.identity.device_id


def _identity(key: SigningKey, name: str) -> DeviceIdentity:
    return DeviceIdentity(
        provider="software",
        trust_level=TrustLevel.SOFTWARE,
        public_key=key.public_bytes,
        attributes={"host": name, "gpu_uuid": f"GPU-demo-{name}"},
    )


class DemoWorld:
    """The running demo. Use as a context manager; `close` stops everything it started."""

    def __init__(self, workdir: Path, port: int = 0, step: Step | None = None) -> None:
        self.workdir = workdir
        self.port = port
        self.step: Step = step or (lambda _: None)
        self.dataset: Dataset = load_dataset()
        self.tokens: dict[str, str] = {}
        self.landmarks: list[RunningLandmark] = []
        self.fleet: list[FleetDevice] = []
        self.relays: RelayProcess | None = None
        self._verifier: VerifierProcess | None = None
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._serving: Any = None
        self.http: httpx.Client | None = None
        self.base_url = ""
        self._log_levels: dict[str, int] = {}
        self.gpus = DemoGpus(self.dataset)
        self._gpu_protos: list[GpuLandmarkProtocol] = []
        self.gpu_rounds: dict[str, list[GpuRound]] = {}
        """GPU-signed rounds per device name (devices whose spec has a `gpu_at`)."""
        self.key_records: dict[str, list[MeasurementRecord]] = {}

    def __enter__(self) -> DemoWorld:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- start ---------------------------------------------------------------------------------

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in QUIET_LOGGERS:
            logger = logging.getLogger(name)
            self._log_levels[name] = logger.level
            logger.setLevel(logging.ERROR)  # rejected records are the demo's point, not noise
        self.step("starting the verifier (temporary SQLite database)")
        self._start_verifier()
        self.step(f"starting {len(LANDMARKS)} landmarks, each with its own key")
        self._start_landmarks()
        self._make_fleet()
        # The relays start while the verifier still loads its country borders.
        self.step("building emulated paths (one delaying relay per device and landmark)")
        self._build_paths()
        self.step("registering landmarks and enrolling the fleet through the API")
        self._register()

    def _start_verifier(self) -> None:
        gpu_root, gpu_calibration = self.gpus.write_trust(self.workdir)
        config = VerifierConfig(
            db_url=f"sqlite:///{self.workdir / 'verifier.db'}",
            # The stand-in GPUs chain to the demo's test root, not NVIDIA's (sim/gpu.py).
            gpu_root_file=str(gpu_root),
            gpu_calibration_file=str(gpu_calibration),
            gpu_calibration_keys=(self.gpus.calibrator_public_hex,),
            recompute_interval_s=0.2,
            checkin_sweep_interval_s=1.0,
            min_checkin_interval_s=1,
            # Signs verdict tokens, so `lightfence gate check` can be tried against the demo.
            signing_key_path=str(self.workdir / "verifier-signing.key"),
        )
        service = Service(config)  # creates the schema; tokens as `lightfence token create` does
        try:
            with service.write() as session:

                def token(name: str, role: Role, owner: str | None = None) -> str:
                    return create_token(
                        session, name=name, role=role, owner=owner, actor="demo", now_ns=now_ns()
                    )

                self.tokens["admin"] = token("demo-admin", Role.ADMIN)
                self.tokens["auditor"] = token("demo-auditor", Role.AUDITOR)
                for op in sorted({d.operator for d in FLEET}):
                    self.tokens[f"operator:{op}"] = token(f"demo-{op}", Role.OPERATOR, op)
                for site in LANDMARKS:
                    self.tokens[f"landmark:{site.id}"] = token(
                        f"lm-{site.id}", Role.LANDMARK, site.id
                    )
        finally:
            service.close()
        self._verifier = VerifierProcess(config, self.port)
        self.port = self._verifier.port
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.base_url, timeout=API_TIMEOUT_S)

    def _start_landmarks(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        t = threading.Thread(target=loop.run_forever, name="lf-landmarks", daemon=True)
        t.start()
        self._threads.append(t)
        for site in LANDMARKS:
            key = SigningKey.generate()
            endpoint = LandmarkEndpoint(LandmarkConfig(landmark_id=site.id), key)
            server = LandmarkServer.bind(
                endpoint,
                "127.0.0.1",
                0,
                "auto",
                verifier_url=f"{self.base_url}/records",
                verifier_token=self.tokens[f"landmark:{site.id}"],
            )
            host = self.dataset.hosts[site.host_id]
            self.landmarks.append(RunningLandmark(site, key, server, host.lat, host.lon))

        self._start_gpu_sockets(loop)

        async def serve_all() -> None:
            self._stop = asyncio.Event()
            await asyncio.gather(*(lm.server.serve(self._stop) for lm in self.landmarks))

        self._serving = asyncio.run_coroutine_threadsafe(serve_all(), loop)

    def api(self, method: str, path: str, token: str = "admin", **kw: Any) -> Any:
        assert self.http is not None
        reply = self.http.request(
            method, path, headers={"Authorization": f"Bearer {self.tokens[token]}"}, **kw
        )
        if reply.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {reply.status_code} {reply.text[:300]}")
        return reply.json()

    def _register(self) -> None:
        for lm in self.landmarks:
            body = {
                "id": lm.site.id,
                "lat": lm.lat,
                "lon": lm.lon,
                "position_error_km": 0.0,
                "public_key": lm.key.public_bytes.hex(),
                "operator": f"demo landmark, {lm.site.city}",
            }
            self.api("POST", "/landmarks", json=body)
        for dev in self.fleet:
            silent = dev.spec.scenario is Scenario.SILENT
            body = {
                "identity": dev.identity.to_json_dict(),
                "licence": {
                    "policy": DEMO_POLICY,
                    "declared_country": dev.spec.claim,
                    "checkin_interval_s": SILENT_CHECKIN_S if silent else HONEST_CHECKIN_S,
                    "gpu_id": self.gpus.gpu_id(dev.spec.name) if dev.spec.gpu_at else None,
                },
                "operator": dev.spec.operator,
            }
            self.api("POST", "/devices", json=body)

    def _make_fleet(self) -> None:
        for spec in FLEET:
            key = SigningKey.generate()
            identity = _identity(key, spec.name)
            answer_key, answer_identity = key, identity
            if spec.scenario is Scenario.CLONED:
                answer_key = SigningKey.generate()
                answer_identity = _Impostor(
                    provider="software",
                    trust_level=TrustLevel.SOFTWARE,
                    public_key=answer_key.public_bytes,
                    attributes=identity.attributes,
                    claimed_device_id=identity.device_id,
                )
            self.fleet.append(FleetDevice(spec, identity, answer_key, answer_identity))

    def path_rtt_ms(self, spec: DeviceSpec, lm: RunningLandmark) -> float:
        """The emulated RTT between a device and a landmark (through the relay, if any)."""
        device = (
            site_of(self.dataset, spec.host_id)
            if spec.key_at is None
            else Site(spec.key_at[0], spec.key_at[1], None)
        )
        landmark = site_of(self.dataset, lm.site.host_id)
        if spec.relay_via is None:
            return path_rtt_ms(self.dataset, device, landmark)
        via = next(x for x in self.landmarks if x.site.id == spec.relay_via)
        relay = Site(via.lat, via.lon, via.site.host_id)
        to_relay = (
            RELAY_NEAR_LANDMARK_RTT_MS if lm is via else path_rtt_ms(self.dataset, landmark, relay)
        )
        return to_relay + path_rtt_ms(self.dataset, relay, device)

    def _start_gpu_sockets(self, loop: asyncio.AbstractEventLoop) -> None:
        """Each landmark also times GPU rounds, on its own socket, appraising under the demo's
        test root (the stand-in GPUs chain to it, not to NVIDIA's)."""
        for lm in self.landmarks:
            endpoint = GpuLandmarkEndpoint(lm.site.id, lm.key, self.gpus.policy)
            transport, proto = asyncio.run_coroutine_threadsafe(
                serve_gpu_rounds(endpoint, "127.0.0.1", 0), loop
            ).result(30)
            self._gpu_protos.append(proto)
            host, port = transport.get_extra_info("sockname")[:2]
            lm.gpu_address = (str(host), int(port))

    def _build_paths(self) -> None:
        paths: list[tuple[FleetDevice, RunningLandmark, float]] = [
            (dev, lm, self.path_rtt_ms(dev.spec, lm))
            for dev in self.fleet
            if dev.spec.scenario is not Scenario.SILENT
            for lm in self.landmarks
        ]
        # GPU paths: from where the GPU really is to each landmark's GPU socket.
        gpu_paths: list[tuple[FleetDevice, RunningLandmark, float]] = [
            (dev, lm, self.gpus.path_rtt_ms(dev, lm))
            for dev in self.fleet
            if dev.spec.gpu_at is not None
            for lm in self.landmarks
            if lm.gpu_address is not None
        ]
        relayed = [(lm.server.address, rtt) for _, lm, rtt in paths]
        relayed += [(lm.gpu_address, rtt) for _, lm, rtt in gpu_paths if lm.gpu_address]
        self.relays = RelayProcess(relayed, seed=1)
        gpu_addresses = self.relays.addresses[len(paths) :]
        for (dev, lm, _), (host, port) in zip(gpu_paths, gpu_addresses, strict=True):
            dev.gpu_entries.append(
                LandmarkEntry(
                    lm.site.id,
                    lm.key.public_bytes,
                    lm.lat,
                    lm.lon,
                    gpu_address=f"{host}:{port}",
                )
            )
        key_addresses = self.relays.addresses[: len(paths)]
        for (dev, lm, _), (host, port) in zip(paths, key_addresses, strict=True):
            dev.entries.append(
                LandmarkEntry(
                    id=lm.site.id,
                    public_key=lm.key.public_bytes,
                    latitude=lm.lat,
                    longitude=lm.lon,
                    address=f"{host}:{port}",
                )
            )

    # --- rounds --------------------------------------------------------------------------------

    def measure_round(self) -> dict[str, list[LandmarkResult]]:
        """Every agent (but the silent one's) measures every landmark once, all concurrently."""

        async def everyone() -> list[list[LandmarkResult]]:
            return list(
                await asyncio.gather(
                    *(
                        measure_all(d.entries, d.answer_key, d.answer_identity, ROUNDS, AGENT_RETRY)
                        for d in self.fleet
                        if d.entries
                    )
                )
            )

        # A woken challenge thread must get the interpreter at once (see cli/agent_cmd.py).
        previous = sys.getswitchinterval()
        sys.setswitchinterval(0.0002)
        try:
            results = asyncio.run(everyone())
        finally:
            sys.setswitchinterval(previous)
        measured = [d for d in self.fleet if d.entries]
        by_name = {d.spec.name: r for d, r in zip(measured, results, strict=True)}
        for d in measured:
            self.key_records[d.spec.name] = [r.record for r in by_name[d.spec.name] if r.record]
            if d.gpu_entries:
                self.gpu_rounds[d.spec.name] = rounds = self.gpus.measure(d)
                self._post_gpu_rounds(rounds)
        return by_name

    def _post_gpu_rounds(self, rounds: list[GpuRound]) -> None:
        """Each landmark posts the GPU rounds it signed to the verifier, as it does records."""
        by_landmark: dict[str, list[GpuRound]] = {}
        for rec, ev in rounds:
            by_landmark.setdefault(rec.landmark_id, []).append((rec, ev))
        for lid, mine in sorted(by_landmark.items()):
            body = {
                "gpu_rounds": [
                    {"record": r.to_json_dict(), "evidence": e.to_json_dict()} for r, e in mine
                ]
            }
            self.api("POST", "/gpu-rounds", f"landmark:{lid}", json=body)

    # --- stop ----------------------------------------------------------------------------------

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            if self._serving is not None:
                try:
                    self._serving.result(timeout=10)
                except Exception:  # shutting down: a landmark that failed has nothing to drain
                    logging.getLogger("lightfence.demo").debug("landmark stop", exc_info=True)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        for proto in self._gpu_protos:
            if self._loop is not None and self._loop.is_running():
                self._loop.call_soon_threadsafe(proto.close)
        if self.relays is not None:
            self.relays.close()
        if self.http is not None:
            self.http.close()
        if self._verifier is not None:
            self._verifier.close()
        for t in self._threads:
            t.join(timeout=10)
        if self._loop is not None and not self._loop.is_running():
            self._loop.close()
        for name, level in self._log_levels.items():
            logging.getLogger(name).setLevel(level)
