"""Optional dependency groups ("extras" in pyproject.toml) and the one-line error for a missing one.

The core install (physics, protocol, landmark, agent, gate, offline verify) runs on a bare GPU
host. A package that needs an extra calls `require` when it is imported; the CLI turns the
`MissingExtra` it raises into one line on stderr naming the command and the extra.
"""

from __future__ import annotations

import importlib.util

EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "verifier": ("fastapi", "uvicorn", "sqlalchemy", "alembic", "prometheus_client", "orjson"),
    "postgres": ("psycopg",),
    "fleet": ("pandas", "pyarrow", "ray"),
    "stream": ("confluent_kafka",),
    "coverage": ("h3", "matplotlib"),
    "eval": ("matplotlib",),
    "gpu": ("pynvml",),
}
"""The top-level modules each extra brings (import names, not distribution names)."""


class MissingExtra(ModuleNotFoundError):
    """A module of an extra is not installed. `extra` names the extra to install."""

    def __init__(self, extra: str, user: str, module: str) -> None:
        super().__init__(f"{user} {install_hint(extra)} ({module} is missing)", name=module)
        self.extra = extra


def install_hint(extra: str) -> str:
    return f"needs the '{extra}' extra: pip install 'lightfence[{extra}]'"


def require(extra: str, user: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise MissingExtra unless every module of `extra` (or just `modules`) is importable.

    `user` names what needs it in the message (a package such as "lightfence.verifier").
    find_spec looks the module up without importing it, so the check costs microseconds.
    """
    for module in modules if modules is not None else EXTRA_MODULES[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise MissingExtra(extra, user, module)


def extra_providing(module: str) -> str | None:
    """The extra that brings top-level module `module` (None for a core or unknown one)."""
    top = module.split(".")[0]
    for extra, modules in EXTRA_MODULES.items():
        if top in modules:
            return extra
    return None
