"""Redraw the README's playground pictures (docs/img/serve_playground.png, serve_attention.png).

    python docs/serve_pictures.py [--model RUN] [--text "The Lord is my"] [--out docs/img]

Starts `glassgpt serve --model RUN` (default: the model that ships with glassgpt, as the README
pictures show it) on a free loopback port, opens the
page in Chromium (Playwright, as the playground test does), types the text, waits until the
next-token bars are drawn, and saves the "Next token" tab; then the "Attention" tab. Needs
Chromium at /usr/bin/chromium (`apt-get install chromium`) and `pip install playwright`.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1200, "height": 990}
TIMEOUT_MS = 60_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"glassgpt serve stopped (exit {server.returncode})")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"glassgpt serve did not answer at {url} within {seconds:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="run folder to serve (default: the shipped model)")
    parser.add_argument("--text", default="The Lord is my")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "img")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from glassgpt.runs import shipped_model

    model = args.model or shipped_model()
    if model is None:
        raise SystemExit("no model shipped with this install: give --model RUN")
    port = free_port()
    command = [sys.executable, "-m", "glassgpt", "serve", "--port", str(port), "--model", str(model)]
    server = subprocess.Popen(command)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(url, server)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=TIMEOUT_MS)
            page.fill("#prompt", args.text)
            page.wait_for_function(
                "n => document.querySelectorAll('#tokens .tok').length >= n && "
                "document.querySelectorAll('.bar-row').length > 0", arg=2, timeout=TIMEOUT_MS)
            page.wait_for_timeout(800)  # the bars animate to their width
            page.screenshot(path=str(args.out / "serve_playground.png"))
            page.click("button[data-tab='attention']")
            page.wait_for_selector("#heatmap rect.cell", timeout=TIMEOUT_MS)
            page.wait_for_timeout(500)
            page.screenshot(path=str(args.out / "serve_attention.png"))
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
    print(f"wrote {args.out / 'serve_playground.png'} and {args.out / 'serve_attention.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
