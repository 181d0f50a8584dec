#!/usr/bin/env python3
"""Buckets a kube-apiserver CPU profile by what each sample's stack was doing.

    apiserver-profile.py PROFILE [TOKENS_PER_SEC]

Each sample goes to the first bucket whose pattern its stack matches (go tool pprof -traces),
so the shares add up to 100 %. A request's handler runs partly in a goroutine of its own,
whose stack no longer shows the filter chain: those samples count under what they did.
"""

import re
import subprocess
import sys
from collections import Counter

BUCKETS = [
    ("Go's garbage collector", r"gcBgMarkWorker|runtime\.bgsweep|runtime\.bgscavenge"),
    ("the audit log itself", r"audit/log\.\(\*backend\)|audit/buffered"),
    ("status patches of the token resources (server-side apply on /status)", r"StatusREST\)\.Update"),
    ("server-side apply of other objects (the Secret's dry-run)", r"applyPatcher"),
    ("merge patches (the finalizer and journal)", r"jsonPatcher"),
    ("creates of the token resources (the client)", r"customresource(?:.*\n)*.*createHandler|createHandler(?:.*\n)*.*crdHandler"),
    ("creates of Secrets, Events, ConfigMaps", r"createHandler"),
    ("reads of the token resources", r"crdHandler\)\.serveResource\.GetResource"),
    ("reads of Secrets", r"getResourceHandler|restfulGetResource"),
    ("lists", r"ListResource"),
    ("serving watches", r"WatchServer|cacheWatcher|serveWatch"),
    ("etcd's watch events and the watch cache", r"watchChan|storage/cacher"),
    ("the etcd client", r"grpc"),
    ("the filter chain every request passes (authentication, authorization, priority and fairness, audit, metrics)",
     r"withAuthentication|WithAudit|filterlatency|flowcontrol|DefaultBuildHandlerChain"),
    ("HTTP and TLS", r"net/http|crypto/tls"),
]


def seconds(text):
    return float(text[:-2]) / 1000 if text.endswith("ms") else float(text[:-1])


def main():
    traces = subprocess.run(
        ["go", "tool", "pprof", "-traces", sys.argv[1]], capture_output=True, text=True, check=True
    ).stdout
    shares, total = Counter(), 0.0
    for block in traces.split("-----------+-------------------------------------------------------"):
        lines = [l for l in block.strip().split("\n") if l.strip()]
        head = re.match(r"\s*([\d.]+m?s)\s+(.*)", lines[0]) if lines else None
        if not head:
            continue
        value = seconds(head.group(1))
        stack = head.group(2) + "\n" + "\n".join(l.strip() for l in lines[1:])
        total += value
        for name, pattern in BUCKETS:
            if re.search(pattern, stack):
                shares[name] += value
                break
        else:
            shares["other"] += value
    if total == 0:
        sys.exit("the profile has no samples")
    print("| where | CPU s | share |")
    print("|---|---|---|")
    for name, value in shares.most_common():
        print(f"| {name} | {value:.2f} | {100 * value / total:.1f} % |")
    line = f"{total:.1f} CPU-seconds in the profile"
    if len(sys.argv) > 2:
        rate = float(sys.argv[2])
        line += f"; at {rate:.1f} tokens/s, {1000 * total / 25 / rate:.1f} ms of API server CPU per token"
    print()
    print(line)


if __name__ == "__main__":
    main()
