"""The README's screenshot of a sample's trace in Arize Phoenix (docs/phoenix_trace.png).

Starts `phoenix serve` on 127.0.0.1 (its database in a temporary folder), runs `robustft demo`
with the OTLP variables pointed at it, finds the sample's span through Phoenix's REST API, opens
the trace with that span selected in a headless Chromium (Playwright) and saves the page:

    .venv-phoenix/bin/pip install playwright     # beside arize-phoenix (`make test-phoenix` builds .venv-phoenix)
    apt-get install chromium                     # the browser Playwright drives
    .venv-phoenix/bin/python scripts/phoenix_screenshot.py [--sample demo-007] [--out docs/phoenix_trace.png]

Run it with the Python that has Playwright; the demo runs with `--python` (default .venv/bin/python).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "robustft-demo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", default="demo-007", help="the sample whose span is selected")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "phoenix_trace.png")
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"), help="runs robustft demo")
    parser.add_argument("--phoenix", default=os.environ.get("ROBUSTFT_PHOENIX") or str(ROOT / ".venv-phoenix" / "bin"
                                                                                          / "phoenix"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    plain = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHOENIX_"))}
    with tempfile.TemporaryDirectory() as work:
        server = subprocess.Popen(
            [args.phoenix, "serve"], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={**plain, "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(port), "PHOENIX_GRPC_PORT": str(free_port()),
                 "PHOENIX_WORKING_DIR": work, "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
                 "PHOENIX_TELEMETRY_ENABLED": "false", "DO_NOT_TRACK": "1"})
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    urllib.request.urlopen(f"{base}/healthz", timeout=2).read()
                    break
                except (urllib.error.URLError, OSError):
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("phoenix serve did not start") from None
                    time.sleep(0.5)
            subprocess.run([args.python, "-m", "robustft", "demo", "--out", str(Path(work) / "run"), "--quiet"],
                           cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                           env={**plain, "PYTHONPATH": str(ROOT), "OTEL_EXPORTER_OTLP_ENDPOINT": base,
                                "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={PROJECT}"})
            deadline = time.monotonic() + 120
            while True:  # Phoenix stores what it received in the background
                try:
                    found = get(f"{base}/v1/projects/{PROJECT}/spans?limit=1000&name=robustft.sample")["data"]
                except urllib.error.HTTPError:
                    found = []
                span = next((s for s in found if s["attributes"].get("robustft.sample.id") == args.sample), None)
                if span is not None:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"no span of sample {args.sample} in Phoenix")
                time.sleep(1)
            project = next(p["id"] for p in get(f"{base}/v1/projects")["data"] if p["name"] == PROJECT)
            url = f"{base}/projects/{project}/traces/{span['context']['trace_id']}?selectedSpanNodeId={span['id']}"
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.goto(url, wait_until="networkidle", timeout=120_000)
                # Drawn when the selected span's attributes show (the tree is drawn before them).
                page.get_by_text(args.sample, exact=True).first.wait_for(timeout=240_000)
                page.wait_for_timeout(3000)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out))
                browser.close()
            print(args.out)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)


if __name__ == "__main__":
    main()
