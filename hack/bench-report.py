#!/usr/bin/env python3
"""Turns target/bench/*.jsonl (one JSON line per run of benches/operator.rs) into Markdown.

    bench-report.py RESULTS_DIR [--summary]

Every figure is the median over the runs of that scenario. --summary prints only the one line
that `make bench` ends with: the ceiling ratio and the memory at 5,000 tokens.
"""

import json
import math
import os
import statistics
import sys


def load(results):
    data = {}
    for f in sorted(os.listdir(results)):
        if f.endswith(".jsonl"):
            with open(os.path.join(results, f)) as fh:
                data[f[: -len(".jsonl")]] = [json.loads(l) for l in fh if l.strip()]
    return data


def med(runs, *path):
    values = []
    for r in runs:
        v = r
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            values.append(v)
    return statistics.median(values) if values else None


def ceiling_tokens_per_sec(run):
    # Each token costs the apiserver the client's create of the resource plus the operator's
    # writes and Events; the raw create rate of small objects divided by that is the most
    # tokens per second this apiserver could take.
    i = run["issuance"]
    return run["ceilingCreatesPerSec"] / (1 + i["writesPerToken"] + i["eventsPerToken"])


def ratio(runs):
    return statistics.median(r["issuance"]["tokensPerSec"] / ceiling_tokens_per_sec(r) for r in runs)


def fmt(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, float) and digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def issuance_columns(data):
    cols = []
    for name, runs in data.items():
        if not name.startswith("tokens-") or not runs or "ceilingCreatesPerSec" not in runs[0]:
            continue
        n = runs[0]["tokens"]
        foreign = runs[0]["foreignSecrets"]
        label = f"{n:,} tokens" + (f" + {foreign:,} foreign Secrets" if foreign else "")
        cols.append(((n, foreign), label, runs))
    return [c[1:] for c in sorted(cols)]


def report(data):
    cols = issuance_columns(data)
    out = []
    out.append("## The operator on a real control plane")
    out.append("")
    out.append(
        "Release build, one replica (leader election off, so that no Lease renewals are counted),\n"
        "the Frontegg fake on loopback, and a fresh control plane for every measurement. A client\n"
        "with 16 concurrent requests creates the token resources across 50 namespaces and the four\n"
        "kinds. The operator runs as its own user, `frontegg-token-operator`, and the apiserver's\n"
        "audit log counts exactly its requests. Each figure is the median of that column's runs\n"
        f"(runs per column: {', '.join(str(len(r)) for _, r in cols)})."
    )
    out.append("")
    out.append("| measure | " + " | ".join(label for label, _ in cols) + " |")
    out.append("|---|" + "---|" * len(cols))
    rows = [
        ("tokens/s until all Ready", lambda r: med(r, "issuance", "tokensPerSec")),
        ("seconds until all Ready", lambda r: med(r, "issuance", "allReadySecs")),
        ("apiserver raw create rate (small objects/s)", lambda r: med(r, "ceilingCreatesPerSec")),
        ("ceiling (tokens/s) = raw rate ÷ (1 + writes + Events per token)",
         lambda r: statistics.median(ceiling_tokens_per_sec(x) for x in r)),
        ("**ratio to the ceiling**", lambda r: ratio(r)),
        ("operator writes per token (Events apart)", lambda r: med(r, "issuance", "writesPerToken")),
        ("operator Events per token", lambda r: med(r, "issuance", "eventsPerToken")),
        ("operator reads (get, list) per token", lambda r: med(r, "issuance", "readsPerToken")),
        ("identity creates per token", lambda r: med(r, "issuance", "identityCreatesPerToken")),
        ("identity calls per token", lambda r: med(r, "issuance", "identityCallsPerToken")),
        ("**operator peak RSS (VmHWM), MiB**", lambda r: med(r, "vmHwmKiB") / 1024),
        ("operator CPU seconds during issuance", lambda r: med(r, "issuance", "cpuSecs")),
        ("kube-apiserver CPU seconds during issuance", lambda r: med(r, "issuance", "cpuSecsByProcess", "kube-apiserver")),
        ("etcd CPU seconds during issuance", lambda r: med(r, "issuance", "cpuSecsByProcess", "etcd")),
        ("benchmark client + fake CPU seconds", lambda r: statistics.median(
            x["issuance"]["cpuSecsByProcess"].get("benchmark client", 0) + x["issuance"]["cpuSecsByProcess"].get("frontegg-fake", 0) for x in r)),
        ("machine CPU seconds available in that window", lambda r: med(r, "issuance", "machineCpuSecs")),
        ("CR→Secret latency at 10/s, p50 ms", lambda r: med(r, "trickleMs", "p50")),
        ("CR→Secret latency at 10/s, p95 ms", lambda r: med(r, "trickleMs", "p95")),
        ("**CR→Secret latency at 10/s, p99 ms**", lambda r: med(r, "trickleMs", "p99")),
    ]
    for title, f in rows:
        cells = []
        for _, runs in cols:
            try:
                v = f(runs)
            except (KeyError, TypeError, ZeroDivisionError, statistics.StatisticsError):
                v = None
            digits = 3 if "per token" in title or "ratio" in title else 1
            cells.append(fmt(v, digits))
        out.append(f"| {title} | " + " | ".join(cells) + " |")

    # What one token costs, request by request, in the largest run without foreign Secrets.
    plain = [(label, runs) for label, runs in cols if runs[0]["foreignSecrets"] == 0]
    if plain:
        label, runs = plain[-1]
        n = runs[0]["tokens"]
        keys = sorted({k for r in runs for k in r["issuance"]["requests"]})
        out.append("")
        out.append(f"Requests by the operator per token during issuance ({label}, median):")
        out.append("")
        out.append("| request | per token |")
        out.append("|---|---|")
        for k in keys:
            v = statistics.median(r["issuance"]["requests"].get(k, 0) for r in runs) / n
            out.append(f"| `{k}` | {v:.3f} |")

    steady = [(label, runs) for label, runs in cols if "steady" in runs[0]]
    if steady:
        out.append("")
        out.append("### Steady state and restart")
        out.append("")
        label, runs = steady[0]
        s = runs[0]["steady"]
        out.append(
            f"{label}, after issuance (which runs with the default 5 min resync): a SIGTERM and a\n"
            f"fresh operator process with a {s['resyncSecs']} s resync, then {s['periods']} of its resync periods\n"
            "(median of the runs)."
        )
        out.append("")
        out.append("| measure | value |")
        out.append("|---|---|")
        rows = [
            ("Kubernetes writes by the operator over the 3 periods (Events apart)", med(runs, "steady", "writes"), 0),
            ("Events over the 3 periods", med(runs, "steady", "events"), 0),
            ("reads (get, list) over the 3 periods", med(runs, "steady", "reads"), 0),
            ("identity calls per (kind, tenant, user) group per period", med(runs, "steady", "identityCallsPerGroupPerPeriod"), 3),
            ("identity creates", med(runs, "steady", "identityCreates"), 0),
            ("CPU seconds per period", med(runs, "steady", "cpuSecsPerPeriod"), 2),
            ("restart: seconds until /readyz", med(runs, "restart", "readySecs"), 2),
            ("restart: seconds until every token has reconciled once", med(runs, "restart", "allReconciledSecs"), 2),
            ("restart: identity calls until 2 s after that", med(runs, "restart", "identityCalls"), 0),
            ("restart: Kubernetes reads (get, list) until 2 s after that", med(runs, "restart", "reads"), 0),
            ("restart: identity creates", med(runs, "restart", "identityCreates"), 0),
            ("restart: Kubernetes writes (Events apart)", med(runs, "restart", "writes"), 0),
            ("restart: peak RSS of the new process, MiB", (med(runs, "restart", "vmHwmKiB") or 0) / 1024, 1),
        ]
        for title, v, d in rows:
            out.append(f"| {title} | {fmt(v, d)} |")

    remote = data.get("remote-qps-20")
    if remote:
        out.append("")
        out.append("### A rate-limited remote")
        out.append("")
        out.append(
            "The fake answers 429 above 20 requests/s; the environment's client-side limit is\n"
            "20/s (burst 1)."
        )
        out.append("")
        out.append("| measure | value |")
        out.append("|---|---|")
        out.append(f"| seconds to issue 1,000 tokens | {fmt(med(remote, 'issuance', 'allReadySecs'))} |")
        out.append(f"| tokens/s | {fmt(med(remote, 'issuance', 'tokensPerSec'))} |")
        out.append(f"| 429s from the remote | {fmt(med(remote, 'issuance', 'remote429s'), 0)} |")
        out.append(f"| identity creates per token | {fmt(med(remote, 'issuance', 'identityCreatesPerToken'), 3)} |")
    out.extend(budget_section(data))
    jwt = data.get("jwt")
    if jwt:
        j = jwt[0]["jwt"]
        out.append("")
        out.append("### JWT delivery")
        out.append("")
        out.append(
            f"{j['tokens']:,} API tokens (UserApiToken and TenantApiToken) with `secret.accessToken`; the\n"
            f"fake's JWTs live {j['jwtLifetimeSecs']} s and are refreshed {j['refreshBeforeSecs']} s early, so once every\n"
            f"{j['refreshIntervalSecs']:.0f} s. Measured over {j['windowSecs']:.0f} s (3 JWT lifetimes) once all are Ready."
        )
        out.append("")
        out.append("| measure | value |")
        out.append("|---|---|")
        per_token = statistics.median(
            (r["jwt"]["refreshCalls"] + r["jwt"]["exchangeCalls"]) / r["jwt"]["tokens"] for r in jwt)
        fits = j["windowSecs"] / j["refreshIntervalSecs"]
        out.append(
            f"| identity calls per token in the window (one per refresh interval fits "
            f"{math.floor(fits)}–{math.ceil(fits)} times) | {fmt(per_token, 2)} |")
        out.append(f"| refreshes (from the refresh token) | {fmt(med(jwt, 'jwt', 'refreshCalls'), 0)} |")
        out.append(f"| fresh exchanges (goal 0 after the first JWT) | {fmt(med(jwt, 'jwt', 'exchangeCalls'), 0)} |")
        out.append(f"| Kubernetes writes per refresh (the Secret; goal 1) | {fmt(med(jwt, 'jwt', 'writesPerRefresh'), 3)} |")
        out.append(f"| Events | {fmt(med(jwt, 'jwt', 'events'), 0)} |")
        out.append(f"| identity creates | {fmt(med(jwt, 'jwt', 'identityCreates'), 0)} |")
        out.append(f"| 429s from the remote | {fmt(med(jwt, 'jwt', 'remote429s'), 0)} |")
        out.append(f"| operator CPU seconds in the window | {fmt(med(jwt, 'jwt', 'cpuSecs'), 2)} |")
    return "\n".join(out)


def budget_section(data):
    """The budget point: many users' personal tokens on one environment at the defaults."""
    key = next((k for k in data if k.startswith("budget-")), None)
    if not key:
        return []
    b = data[key][0]
    drift, budget = b["drift"], b["budget"]
    rows = [
        ("seconds to issue all (every token Ready)", fmt(b["issuance"]["allReadySecs"])),
        ("tokens/s", fmt(b["issuance"]["tokensPerSec"], 2)),
        ("20 new tokens in the steady state, seconds to Ready: p50 / p99 / max",
         " / ".join(fmt(b["newTokenSecs"][p], 2) for p in ("p50", "p99", "max"))),
        ("10 requested rotations, seconds each: p50 / p99 / max",
         " / ".join(fmt(b["rotationSecs"][p], 2) for p in ("p50", "p99", "max"))),
        ("drift period achieved against configured, seconds",
         f"{drift['achievedSecs']} against {drift['configuredSecs']} ({drift['condition']})"),
        ("drift groups; groups that fit the configured period", f"{drift['groups']}; {drift['groupsThatFit']}"),
        ("listings/s in the steady state", fmt(b["steady"]["listingsPerSec"], 2)),
        ("all Frontegg calls/s in the steady state", fmt(b["steady"]["callsPerSec"], 2)),
        ("busiest 1 s / 10 s of calls, against what qps 10 and burst 20 allow",
         f"{budget['busiest1s']} / {budget['busiest10s']} against {budget['allowed1s']:.0f} / {budget['allowed10s']:.0f}"),
        ("operator peak RSS, MiB", fmt(b["vmHwmKiB"] / 1024)),
    ]
    out = ["", "### The budget at 5,000 users" if b["budgetUsers"] == 5000
           else f"### The budget at {b['budgetUsers']:,} users", ""]
    out.append(
        f"{b['budgetUsers']:,} `UserApiToken`s of as many users (one drift group each) in one environment,\n"
        "with the operator's defaults: `--qps 10`, `--burst 20`, `--resync-period 5m`. One run."
    )
    out.extend(["", "| measure | value |", "|---|---|"])
    out.extend(f"| {t} | {v} |" for t, v in rows)
    return out


def summary(data):
    parts = []
    cols = issuance_columns(data)
    for label, runs in cols:
        if runs[0]["foreignSecrets"] == 0:
            parts.append(f"{label}: ratio to ceiling {ratio(runs):.2f}, VmHWM {med(runs, 'vmHwmKiB') / 1024:.1f} MiB")
    five = data.get("tokens-5000")
    if five:
        return (f"ceiling ratio at 5,000 tokens: {ratio(five):.2f}; "
                f"VmHWM at 5,000 tokens: {med(five, 'vmHwmKiB') / 1024:.1f} MiB")
    return "; ".join(parts)


def main():
    data = load(sys.argv[1])
    if "--summary" in sys.argv:
        print(summary(data))
    elif "--budget" in sys.argv:
        print("\n".join(budget_section(data)))
    else:
        print(report(data))


if __name__ == "__main__":
    main()
