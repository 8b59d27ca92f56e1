"""The runnable steps of docs/deploy.md: every ```sh block, with the host it runs on.

A block's first line says where it runs: `# on: HOST`, optionally followed by options in
parentheses, comma-separated: `background` (a service that keeps running), `ready: TEXT` (the
line a background service prints once it serves), `exit: N` (the exit status the step must
have; 0 otherwise). A block without that line is an error: the page must say where every
command runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
HEADER = re.compile(r"^# on: (?P<host>[a-z][a-z0-9-]*)(?: \((?P<opts>[^)]*)\))?\s*$")


class DocError(ValueError):
    """A runnable block the test cannot place; the message names its line."""


@dataclass(frozen=True)
class Step:
    host: str
    script: str
    """The block's text, exactly as on the page (its `# on:` line included: a bash comment)."""
    line: int
    """Line of the block's first command in the page (1-based), for error messages."""
    background: bool = False
    ready: str | None = None
    exit_code: int = 0


def _options(opts: str, line: int) -> dict[str, object]:
    out: dict[str, object] = {}
    for part in (p.strip() for p in opts.split(",") if p.strip()):
        if part == "background":
            out["background"] = True
        elif part.startswith("ready:"):
            out["ready"] = part.removeprefix("ready:").strip()
        elif part.startswith("exit:"):
            try:
                out["exit_code"] = int(part.removeprefix("exit:").strip())
            except ValueError:
                raise DocError(f"line {line}: exit status must be a number: {part!r}") from None
        else:
            raise DocError(f"line {line}: unknown block option {part!r}")
    if out.get("background") and not out.get("ready"):
        raise DocError(f"line {line}: a background block needs `ready: TEXT`")
    return out


def steps(markdown: str) -> list[Step]:
    """Every ```sh block of `markdown`, in order."""
    out: list[Step] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        start = i + 1
        end = start
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        if end == len(lines):
            raise DocError(f"line {i + 1}: code block is never closed")
        if fence.group("lang") == "sh":
            body = lines[start:end]
            header = HEADER.match(body[0]) if body else None
            if header is None:
                raise DocError(f"line {start + 1}: a sh block must start with `# on: HOST`")
            opts = _options(header.group("opts") or "", start + 1)
            out.append(
                Step(
                    host=header.group("host"),
                    script="\n".join(body) + "\n",
                    line=start + 2,
                    background=bool(opts.get("background", False)),
                    ready=opts.get("ready") if isinstance(opts.get("ready"), str) else None,  # type: ignore[arg-type]
                    exit_code=int(opts.get("exit_code", 0)),  # type: ignore[call-overload]
                )
            )
        i = end + 1
    return out


def read_steps(path: Path) -> list[Step]:
    return steps(path.read_text(encoding="utf-8"))


SCP_STANDIN = '''#!{python}
"""Stand-in for scp in the namespace test: HOST:PATH is PATH in that host's directory."""
import os, shutil, sys
ROOT = {root!r}
args = [a for a in sys.argv[1:] if not a.startswith("-")]
if len(args) < 2:
    sys.exit("usage: scp SRC... DST")
def where(spec):
    if ":" not in spec:
        return spec
    host, path = spec.split(":", 1)
    if not os.path.isdir(os.path.join(ROOT, host)):
        sys.exit(f"ssh: Could not resolve hostname {{host}}")
    return os.path.join(ROOT, host, path)
*sources, target = args
dest = where(target)
for src in sources:
    path = where(src)
    if not os.path.isfile(path):
        sys.exit(f"scp: {{src}}: No such file or directory")
    shutil.copy(path, os.path.join(dest, os.path.basename(path)) if os.path.isdir(dest) else dest)
'''


def write_standins(bin_dir: Path, hosts_root: Path, python: str) -> None:
    """`lightfence` (this checkout, this interpreter) and `scp` on the hosts' PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    lf = bin_dir / "lightfence"
    lf.write_text(f'#!/bin/sh\nexec {python} -m lightfence "$@"\n')
    scp = bin_dir / "scp"
    scp.write_text(SCP_STANDIN.format(python=python, root=str(hosts_root)))
    for f in (lf, scp):
        f.chmod(0o755)
