"""HTML to PDF with a real browser's print engine: Debian's chromium through Playwright.

Optional twice over: the `playwright` package (a dev dependency) and a chromium binary. Without
either, `converter_problem` says what is missing and the caller writes the HTML alone. The page
is loaded offline (no network: the report is self-contained, and chromium is told so).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

CHROMIUM_ENV = "LIGHTFENCE_CHROMIUM"
"""Path of the chromium binary to print with (default: /usr/bin/chromium, else on PATH)."""
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
]
PRINT_TIMEOUT_MS = 120_000


class PdfError(RuntimeError):
    pass


def chromium_path() -> str | None:
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        return configured if Path(configured).exists() else None
    if Path(DEFAULT_CHROMIUM).exists():
        return DEFAULT_CHROMIUM
    return shutil.which("chromium") or shutil.which("chromium-browser")


def converter_problem() -> str | None:
    """Why no PDF can be printed here, or None when it can."""
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install playwright)"
    if chromium_path() is None:
        return (
            f"no chromium binary ({DEFAULT_CHROMIUM}, on PATH, or ${CHROMIUM_ENV}); "
            "install Debian's chromium"
        )
    return None


def html_to_pdf(html_path: Path, pdf_path: Path) -> None:
    """Print the page at `html_path` to `pdf_path` (A4, backgrounds on)."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        raise PdfError(converter_problem() or "no chromium")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(offline=True, java_script_enabled=False)
                page = context.new_page()
                page.goto(html_path.resolve().as_uri(), timeout=PRINT_TIMEOUT_MS)
                page.emulate_media(media="print")
                page.pdf(path=str(pdf_path), format="A4", print_background=True)
            finally:
                browser.close()
    except PlaywrightError as exc:
        raise PdfError(f"chromium could not print the report: {exc}") from None
