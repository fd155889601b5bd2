"""What the simulated expert server costs: its CPU per request and requests per second.

The framework-cost and scale benchmarks run hundreds of thousands of calls against an instant
`robustft.sim` in another process, and the saturation benchmark 64 concurrent connections at
50 ms latency: the sim must be a small part of the CPU and never the limit. This starts
`python -m robustft.sim` on the ARC gold answers in its own process and sends it chat completion
(base and step-by-step prompts, logprobs on) and embedding requests from an aiohttp client over
keep-alive connections, then reads the server process's CPU time.

    python -m benchmarks.sim_server [--requests N] [--quick]

Writes benchmarks/results/sim_server.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psutil

from ._runs import DATA

ROOT = Path(__file__).resolve().parents[1]
GOLD = DATA / "arc" / "labeled.csv"
RESULTS = Path(__file__).parent / "results"


def _bodies(n: int) -> list[dict]:
    from robustft.answers import format_options
    from robustft.sim import load_gold

    items = load_gold(GOLD)
    bodies = []
    for i in range(n):
        item = items[i % len(items)]
        how = "Think it through step by step." if i % 2 else "Answer directly."
        options = format_options(list(item.options or ()))
        prompt = f"{how}\nEnd with a line \"Answer: \" and a letter.\n\nQuestion:\n{item.question}\nOptions:\n{options}\n"
        bodies.append({"model": "sim", "messages": [{"role": "user", "content": prompt}], "logprobs": True,
                       "max_tokens": 512, "seed": i // len(items)})
    return bodies


async def _drive(base_url: str, path: str, bodies: list, concurrency: int) -> float:
    queue = iter(bodies)

    async def worker(session: aiohttp.ClientSession) -> None:
        for body in queue:
            async with session.post(base_url + path, json=body) as response:
                await response.read()
                assert response.status == 200, response.status

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return time.perf_counter() - started


def measure(label: str, path: str, bodies: list, concurrency: int, latency_ms: float) -> dict:
    process = subprocess.Popen([sys.executable, "-m", "robustft.sim", "--gold", str(GOLD),
                                "--latency-ms", str(latency_ms)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        base_url = process.stdout.readline().strip()
        server = psutil.Process(process.pid)
        asyncio.run(_drive(base_url, path, bodies[:concurrency * 2], concurrency))  # warm up connections
        cpu_before = sum(server.cpu_times()[:2])
        client_before = time.process_time()
        wall = asyncio.run(_drive(base_url, path, bodies, concurrency))
        server_cpu = sum(server.cpu_times()[:2]) - cpu_before
        client_cpu = time.process_time() - client_before
        rss = server.memory_info().rss
    finally:
        process.terminate()
        process.wait(timeout=10)
    n = len(bodies)
    row = {"case": label, "path": path, "requests": n, "concurrency": concurrency, "latency_ms": latency_ms,
           "requests_per_s": round(n / wall, 1), "server_cpu_ms_per_request": round(1000 * server_cpu / n, 3),
           "client_cpu_ms_per_request": round(1000 * client_cpu / n, 3), "server_rss_mb": round(rss / 2**20, 1)}
    print(json.dumps(row), flush=True)
    return row


def measure_model_only(bodies: list) -> dict:
    """The baseline: the same chat requests answered in-process, without HTTP."""
    from robustft.sim import SimModel, load_gold

    model = SimModel(load_gold(GOLD))
    raw = [json.dumps(body).encode() for body in bodies]
    started = time.process_time()
    for body in raw:
        model.complete(body).encoded()
    cpu = time.process_time() - started
    row = {"case": "chat, model only (no HTTP), in-process", "path": "-", "requests": len(raw), "concurrency": 1,
           "latency_ms": 0, "requests_per_s": round(len(raw) / cpu, 1),
           "server_cpu_ms_per_request": round(1000 * cpu / len(raw), 3), "client_cpu_ms_per_request": 0.0,
           "server_rss_mb": 0.0}
    print(json.dumps(row), flush=True)
    return row


def to_markdown(rows: list[dict]) -> str:
    lines = ["`python -m robustft.sim` on the ARC gold answers, in its own process; an aiohttp client on the "
             "same machine over keep-alive connections. Chat requests alternate base and step-by-step prompts, "
             "logprobs on. The first row is the baseline: the same requests answered in-process, so the "
             "difference is the HTTP layer's cost. The machine is shared, so requests/s vary from run to run; "
             "CPU per request is the steadier figure.", "",
             "| case | requests | concurrency | latency | requests/s | server CPU per request | "
             "client CPU per request | server RSS |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['requests']} | {r['concurrency']} | {r['latency_ms']:g} ms | "
                     f"{r['requests_per_s']:.0f} | {r['server_cpu_ms_per_request']:.3f} ms | "
                     f"{r['client_cpu_ms_per_request']:.3f} ms | {r['server_rss_mb']:.0f} MB |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per instant case (20000)")
    parser.add_argument("--quick", action="store_true", help="2000 requests per case")
    args = parser.parse_args(argv)
    if not GOLD.exists():
        raise SystemExit(f"benchmark data not found at {GOLD}")
    n = 2000 if args.quick else args.requests
    chat = _bodies(n)
    questions = [body["messages"][0]["content"].split("Question:\n")[1].split("\nOptions:")[0] for body in chat]
    embed = [{"model": "sim", "input": questions[i:i + 64], "encoding_format": "base64"}
             for i in range(0, min(n, 64 * 200), 64)]
    rows = [
        measure_model_only(chat[:n // 4]),
        measure("chat, instant, 64 connections", "/chat/completions", chat, 64, 0),
        measure("chat, instant, 1 connection", "/chat/completions", chat[:n // 4], 1, 0),
        measure("chat, 50 ms, 64 connections", "/chat/completions", chat[:n // 4], 64, 50),
        measure("embeddings, 64 questions per request (base64), instant, 8 connections", "/embeddings", embed, 8, 0),
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sim_server.json").write_text(json.dumps(rows, indent=2) + "\n")
    (RESULTS / "sim_server.md").write_text(to_markdown(rows))
    return rows


if __name__ == "__main__":
    main()
