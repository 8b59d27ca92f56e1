"""From a fresh clone: how long `make demo` takes to print its first demo line, and how big the
core-only virtualenv is. Caches start cold (a fresh UV_CACHE_DIR, PIP_NO_CACHE_DIR=1), so every
wheel is downloaded, as on a newcomer's machine.

    python -m bench.install [--rev REV] [--baseline REV] [--keep]

REV (default HEAD) is cloned from this repository into a temporary directory; `--baseline`
times `make demo` of another revision the same way, in the same run, for a ratio. The demo is
stopped (SIGINT, then SIGTERM to its process group) once its verdict table is printed. Not in
`python -m bench`'s default list: it downloads a few hundred megabytes.
"""

from __future__ import annotations

import argparse
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO_DONE = "lightfence demo: verdicts"
"""The title of the verdict table: the demo's first round is complete."""
TIMEOUT_S = 900.0


def _clone(rev: str, into: Path) -> Path:
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(REPO), str(into)], check=True)
    subprocess.run(["git", "-C", str(into), "checkout", "--quiet", rev], check=True)
    return into


def _cold_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env["UV_CACHE_DIR"] = str(tmp / "uv-cache")
    env["PIP_NO_CACHE_DIR"] = "1"
    # No uv from PATH: the Makefile bootstraps its own, as on a machine without uv.
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not (Path(p) / "uv").exists()
    )
    return env


Times = tuple[float | None, float | None, float | None]


def time_make_demo(clone: Path, env: dict[str, str], log: Path) -> Times:
    """(first output of any kind, first demo line, verdict table) in seconds after `make demo`;
    None for what never came."""
    start = time.monotonic()
    proc = subprocess.Popen(
        ["make", "demo"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    first_any: float | None = None
    first_demo: float | None = None
    done: float | None = None
    demo_started = False
    with log.open("w") as out:
        try:
            while time.monotonic() - start < TIMEOUT_S and done is None:
                if not sel.select(timeout=1.0):
                    if proc.poll() is not None:
                        break
                    continue
                line = proc.stdout.readline().decode(errors="replace")
                if not line:
                    break
                t = time.monotonic() - start
                out.write(f"{t:7.1f} {line}")
                if first_any is None:
                    first_any = t
                if demo_started and first_demo is None:
                    first_demo = t
                # make echoes the command, then the demo's own output follows.
                if line.rstrip().endswith("lightfence demo"):
                    demo_started = True
                if DEMO_DONE in line:
                    done = t
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                if proc.poll() is not None:
                    break
                os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    continue
    return first_any, first_demo, done


def core_venv_mb(clone: Path, env: dict[str, str], uv: Path) -> float:
    """Size of a virtualenv with the core only (agent, landmark, gate, verify), from the lock."""
    venv = clone / "core-venv"
    subprocess.run([str(uv), "venv", "--quiet", str(venv)], env=env, check=True)
    subprocess.run(
        [str(uv), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
         "-r", "requirements/core.txt", "."],
        cwd=clone, env=env, check=True,
    )  # fmt: skip
    out = subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[0])


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.install")
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--baseline", help="another revision to time the same way")
    parser.add_argument("--keep", action="store_true", help="keep the clones (prints where)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="lightfence-install-"))
    try:
        runs = [("this", args.rev)] + ([("baseline", args.baseline)] if args.baseline else [])
        results: dict[str, Times] = {}
        for label, rev in runs:
            clone = _clone(rev, tmp / label)
            env = _cold_env(tmp / f"{label}-cache")
            results[label] = time_make_demo(clone, env, tmp / f"{label}.log")
            first_any, first_demo, done = results[label]
            print(
                f"{label} ({rev}): first output {_s(first_any)}, first demo line "
                f"{_s(first_demo)}, verdict table {_s(done)} (log: {tmp / f'{label}.log'})"
            )
        this, base = results["this"][1], results.get("baseline", (None, None, None))[1]
        if this is not None and base is not None:
            print(f"first demo line: {this / base:.2f} x the baseline's")
        clone = tmp / "this"
        uv = clone / ".venv" / "bin" / "uv"
        if not uv.exists():
            uv = Path(shutil.which("uv") or "uv")
        size = core_venv_mb(clone, _cold_env(tmp / "core-cache"), uv)
        print(f"core-only virtualenv: {size:.0f} MB (du -sm)")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
