"""Load generator for an OpenAI-compatible server: N concurrent streaming
clients for S seconds, each sending chats back to back. Prints one JSON
object: requests, errors (by status; deliberate 503s apart), time to first
token p50/p95, aggregate generated tokens/s, and the server's RSS before and
after (when given its pid).

usage: python load.py --url http://127.0.0.1:8080 --model small --clients 8 --seconds 120 [--pid PID]
                      [--users N] [--rss-every S]

--users N names one of N users (load-0 .. load-N-1, in turn) in each
request, so the server answers as that user: persona, memory search, the
exchange stored (a persona is built once a user has five records). Without
it the chats are plain. --rss-every S samples the server's RSS every S
seconds into "rss_mib_series" ([seconds, MiB] pairs), to see whether its
memory levels off under a long load.

Tokens are counted as the content chunks of the streams (both servers
send one chunk per token), so the two servers are counted alike.
"""

import argparse
import asyncio
import json
import random
import statistics
import time

import httpx

QUESTIONS = [
    "Give me three tips for keeping houseplants alive.",
    "Explain in a few sentences why the sky is blue.",
    "Write a short poem about autumn rain.",
    "What are the main differences between tea and coffee?",
    "Describe a good morning routine.",
    "How does a bicycle stay upright?",
    "Suggest a plan for a rainy weekend.",
    "Summarise the plot of a classic adventure story you know.",
]


def rss_kib(pid):
    if not pid:
        return None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


async def client(n, args, deadline, stats):
    rng = random.Random(n)
    sent = 0
    async with httpx.AsyncClient(base_url=args.url, timeout=httpx.Timeout(600.0)) as http:
        while time.monotonic() < deadline:
            body = {
                "model": args.model,
                "messages": [{"role": "user", "content": rng.choice(QUESTIONS)}],
                "max_tokens": args.max_tokens,
                "temperature": 0.7,
                "seed": rng.randrange(1 << 30),
                "stream": True,
            }
            if args.users:
                body["user"] = f"load-{(n + sent * args.clients) % args.users}"
                sent += 1
            start = time.monotonic()
            first = None
            tokens = 0
            try:
                async with http.stream("POST", "/v1/chat/completions", json=body) as r:
                    if r.status_code != 200:
                        await r.aread()
                        key = "503" if r.status_code == 503 else str(r.status_code)
                        stats["status"][key] = stats["status"].get(key, 0) + 1
                        if r.status_code == 503:
                            await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                        continue
                    async for line in r.aiter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        chunk = json.loads(line[6:])
                        if "error" in chunk:
                            stats["status"]["stream-error"] = stats["status"].get("stream-error", 0) + 1
                            break
                        choices = chunk.get("choices") or []
                        if choices and choices[0].get("delta", {}).get("content"):
                            if first is None:
                                first = time.monotonic() - start
                            tokens += 1
            except (httpx.HTTPError, json.JSONDecodeError) as e:
                stats["status"][type(e).__name__] = stats["status"].get(type(e).__name__, 0) + 1
                continue
            stats["requests"] += 1
            stats["tokens"] += tokens
            if first is not None:
                stats["ttft"].append(first)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=120)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--pid", type=int)
    p.add_argument("--users", type=int, default=0)
    p.add_argument("--rss-every", type=float, default=0)
    args = p.parse_args()
    stats = {"requests": 0, "tokens": 0, "ttft": [], "status": {}}
    rss_before = rss_kib(args.pid)
    start = time.monotonic()
    deadline = start + args.seconds
    series = []

    async def sample():
        while time.monotonic() < deadline:
            rss = rss_kib(args.pid)
            if rss is not None:
                series.append([round(time.monotonic() - start), round(rss / 1024, 1)])
            await asyncio.sleep(args.rss_every)

    sampler = asyncio.create_task(sample()) if args.rss_every > 0 and args.pid else None
    await asyncio.gather(*(client(n, args, deadline, stats) for n in range(args.clients)))
    if sampler:
        sampler.cancel()
    elapsed = time.monotonic() - start
    ttft = sorted(stats["ttft"])
    q = lambda f: ttft[min(len(ttft) - 1, int(f * len(ttft)))] if ttft else None
    errors = sum(v for k, v in stats["status"].items() if k != "503")
    print(json.dumps({
        "clients": args.clients,
        "users": args.users,
        "seconds": round(elapsed, 1),
        "requests": stats["requests"],
        "errors": errors,
        "refused_503": stats["status"].get("503", 0),
        "status": stats["status"],
        "ttft_p50_s": q(0.5),
        "ttft_p95_s": q(0.95),
        "tokens": stats["tokens"],
        "tokens_per_s": round(stats["tokens"] / elapsed, 2),
        "rss_before_mib": rss_before and round(rss_before / 1024, 1),
        "rss_after_mib": rss_kib(args.pid) and round(rss_kib(args.pid) / 1024, 1),
        **({"rss_mib_series": series} if series else {}),
    }))


asyncio.run(main())
