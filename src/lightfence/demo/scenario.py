"""The demo's world: landmarks at real data-set cities, and a small fleet with one story each.

Every position is a host of the shipped data set (data/rtt-public), so most path RTTs are real
measurements (see sim.emulate.path_rtt_ms for the rest).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DEMO_POLICY = "outside:CN,HK,MO"
"""Every licence in the demo: an export licence that forbids China, Hong Kong and Macao."""
HONEST_CHECKIN_S = 300
SILENT_CHECKIN_S = 2
"""The silent host's licence asks for a check-in every 2 s, so its missed check-in shows at once."""
KEY_VM = (50.05, 8.57)
"""Where the moved key's VM is: a data centre by Frankfurt airport, about 10 km from the
Frankfurt landmark. (Near Singapore it would not do: China as governed reaches the Spratly claims,
870 km from the Singapore landmark, and the demo's sparse Singapore cannot clear that at f = 1.)"""
SHENZHEN = (22.5431, 114.0579)
"""Where the moved-key scenario's GPU really is (no data-set host there: its RTTs are modelled)."""
RELAY_NEAR_LANDMARK_RTT_MS = 0.3
"""RTT between the smugglers' relay and the Singapore landmark: the same data centre."""


class Scenario(StrEnum):
    HONEST = "honest"
    SPARSE = "honest-sparse"
    """Honest, but only one landmark is near enough to clear the restricted region. Tolerating
    one lying landmark (the default with four or more) needs two, so it stays UNVERIFIED: the
    demo's lesson that coverage, not honesty, decides a verdict."""
    RELAYED = "relayed"
    """A GPU in a restricted country; every challenge goes through a relay next to a landmark."""
    CLONED = "cloned-key"
    """A host answers for an enrolled device with a key that is not the enrolled one."""
    SILENT = "silent"
    """Enrolled, then never checks in."""
    MOVED_KEY = "moved-key"
    """The key file was moved to a VM next to the Frankfurt landmark (close enough to it and to
    London's and Stockholm's for a robust key verdict); the GPU stays in Shenzhen. Key rounds
    say VERIFIED (a key verdict locates the key), GPU-signed rounds do not, and the two regions
    are disjoint: INCONSISTENT with a key-gpu-mismatch alert."""


@dataclass(frozen=True)
class LandmarkSite:
    id: str
    host_id: str
    """Data-set host whose position (and measured RTTs) the landmark takes."""
    city: str


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    scenario: Scenario
    operator: str
    claim: str
    """The country the operator declares."""
    host_id: str
    """Where the GPU really is (a data-set host)."""
    relay_via: str | None = None
    """Landmark id whose site the relay sits next to (the relayed scenario)."""
    key_at: tuple[float, float] | None = None
    """Where the answering key really is, when not at `host_id` (lat, lon; RTTs modelled)."""
    gpu_at: tuple[float, float] | None = None
    """Where the GPU is when it is not where its key answers (lat, lon; the moved-key scenario).
    Devices with it also run GPU-signed rounds through a GPU stand-in (sim/gpu.py)."""


LANDMARKS: tuple[LandmarkSite, ...] = (
    LandmarkSite("fra", "wn-29", "Frankfurt"),
    LandmarkSite("lon", "wn-11", "London"),
    LandmarkSite("sto", "wn-10", "Stockholm"),
    LandmarkSite("tyo", "wn-6", "Tokyo"),
    LandmarkSite("sin", "ra-6149", "Singapore"),
    LandmarkSite("kul", "wn-36", "Kuala Lumpur"),
    LandmarkSite("hkg", "wn-72", "Hong Kong"),
    LandmarkSite("maa", "wn-85", "Chennai"),
    LandmarkSite("bkk", "wn-64", "Bangkok"),
    LandmarkSite("syd", "wn-107", "Sydney"),
    LandmarkSite("cbr", "wn-218", "Canberra"),
    LandmarkSite("iad", "wn-16", "Washington"),
    LandmarkSite("dfw", "wn-12", "Dallas"),
    LandmarkSite("sjc", "wn-23", "San Jose"),
    LandmarkSite("gru", "wn-125", "São Paulo"),
    LandmarkSite("jnb", "wn-175", "Johannesburg"),
)

FLEET: tuple[DeviceSpec, ...] = (
    DeviceSpec("gpu-de-munich", Scenario.HONEST, "acme-cloud", "DE", "wn-210"),
    DeviceSpec("gpu-sg-1", Scenario.SPARSE, "acme-cloud", "SG", "ra-6345"),
    DeviceSpec("gpu-gb-maidstone", Scenario.HONEST, "globex", "GB", "wn-156"),
    DeviceSpec("gpu-jp-tokyo", Scenario.SPARSE, "globex", "JP", "wn-244"),
    DeviceSpec("gpu-us-chicago", Scenario.HONEST, "globex", "US", "wn-22"),
    DeviceSpec("gpu-au-melbourne", Scenario.HONEST, "acme-cloud", "AU", "wn-1"),
    DeviceSpec("gpu-sg-2", Scenario.RELAYED, "globex", "SG", "wn-84", relay_via="sin"),
    DeviceSpec("gpu-de-dusseldorf", Scenario.CLONED, "acme-cloud", "DE", "wn-153"),
    DeviceSpec("gpu-us-boston", Scenario.SILENT, "globex", "US", "wn-14"),
    DeviceSpec(
        "gpu-de-3", Scenario.MOVED_KEY, "globex", "DE", "wn-29", key_at=KEY_VM, gpu_at=SHENZHEN
    ),
)
