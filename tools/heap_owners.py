#!/usr/bin/env python3
"""Live heap of a kuma-cp by owner, from a heaptrack profile.

`make heap-profile` runs the xDS benchmark with kuma-cp under heaptrack,
kills kuma-cp with -9 once every proxy is configured and at rest (so what
heaptrack reports as leaked is exactly what was live), and runs this on
`heaptrack_print --print-leaks 1` of the profile:

    tools/heap_owners.py LEAKS.txt PROXIES

Each allocation site is given to the first owner whose pattern one of its
frames matches; the table is per proxy.
"""

import re
import sys

# (owner, patterns that some frame of the allocation's stack must each
# match), first match wins. The
# stream's serving state is boxed inside the stream's task: the first
# frame past the allocator is tokio's poll of the task.
OWNERS = [
    ("certificates (the proxy's identity secret, signing)", r"xds::identity|MeshCa|identity_secret"),
    ("snapshots (the proxy's snapshot and its own lists)", r"SnapshotCache::set|Snapshot::new|SharedSets::intern"),
    ("the proxy's own generated resources (inbound listener)", r"xds::generator"),
    ("the index (dataplanes by mesh and service)", r"xds::index"),
    ("the subscription tracker (the insight being built)", r"InsightWriter::track|SubscriptionTracker"),
    ("dataplanes in the store (written through the API)", r"api::resources::put"),
    ("DataplaneInsights in the store", r"store::memory|store::postgres"),
    ("the stream's task", r"xds::ads::spawn_stream"),
    ("the stream's response slot and snapshot watch", r"xds::ads::slot|SnapshotCache::watch"),
    ("TLS: the connection's rustls state and buffers", r"rustls::|tokio_rustls::"),
    ("the connection's task and HTTP/2 state (runtime::http2: streams, request bodies)", r"runtime::http2"),
    ("the connection's task (accepted, handshaken)", r"runtime::listen"),
]
SERVING_STATE = "the stream's serving state (boxed in its task)"
ALLOCATOR = r"^(0x[0-9a-f]+|.*rdl_alloc|.*rust_alloc|alloc::|malloc)"


def matches(patterns, frames):
    patterns = (patterns,) if isinstance(patterns, str) else patterns
    return all(any(re.search(p, f) for f in frames) for p in patterns)


def frames_of(lines, start):
    """The stack frames listed after an entry, up to the next entry."""
    frames = []
    for line in lines[start:]:
        text = line.strip()
        if "leaked over" in text:
            break
        if text and not text.startswith(("in /", "at ")):
            frames.append(demangle(text))
    return frames


def demangle(frame):
    frame = re.sub(r"::h[0-9a-f]{16}$", "", frame)
    for code, char in [("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$C$", ","),
                       ("$u7b$", "{"), ("$u7d$", "}"), ("$RF$", "&"), ("..", "::")]:
        frame = frame.replace(code, char)
    return frame.lstrip("_")


def size_of(text):
    number, unit = re.match(r"([\d.]+)([KMG]?)", text).groups()
    return float(number) * {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[unit]


def main(path, proxies):
    lines = open(path).read().split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("MEMORY LEAKS"))
    totals = {}
    site = ""
    for i in range(start + 1, len(lines)):
        if re.match(r"^\S+ leaked over \d+ calls from$", lines[i]):
            site = demangle(lines[i + 1].strip())
            continue
        entry = re.match(r"^\s*(\S+) leaked over \d+ calls from:$", lines[i])
        if not entry:
            continue
        frames = [site] + frames_of(lines, i + 1)
        first_of_ours = next((f for f in frames if not re.search(ALLOCATOR, f)), "")
        owner = next(
            (name for name, patterns in OWNERS if matches(patterns, frames)),
            SERVING_STATE
            if first_of_ours.startswith("tokio::runtime::task::core::Core<T,S>::poll")
            else "other (the runtime, the API, allocations under 1 per proxy)",
        )
        totals[owner] = totals.get(owner, 0) + size_of(entry.group(1))
    print(f"| owner | per proxy ({proxies} proxies) |")
    print("|---|--:|")
    for owner, size in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {owner} | {size / proxies / 1024:.2f} KiB |")
    print(f"| all live heap | {sum(totals.values()) / proxies / 1024:.2f} KiB |")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
