#!/usr/bin/env python3
"""bench_report.py -- turn a scripts/bench.sh result directory into summary.md.

Usage:
    scripts/bench_report.py RESULT_DIR [--stdout]

Reads RESULT_DIR/meta.json and RESULT_DIR/runs.jsonl (one JSON object per
run: kind "pgbench", "idle" or "storm"), computes the p99 latency of every
pgbench run from its per-transaction logs (RESULT_DIR/logs/<run>.<pid>[.N],
plain or gzipped; cached in RESULT_DIR/p99-cache.json) and writes
RESULT_DIR/summary.md (or prints it with --stdout).

Cells show the median over repetitions with [min-max]; runs with an error
(pgbench exit status, aborted clients, pooler died) are left out of the
medians and listed under their table.  Ratios are of medians.
Python 3 standard library only.
"""
import glob
import gzip
import json
import math
import os
import statistics
import sys

TARGETS = ["direct", "relay", "pgbouncer", "sluice"]
NAMES = {"direct": "direct", "relay": "1:1 relay", "pgbouncer": "PgBouncer", "sluice": "Sluice"}
WORKLOAD_DESC = {
    "select": "pgbench -S (simple protocol)",
    "select-ext": "pgbench -S -M extended",
    "select-prep": "pgbench -S -M prepared",
    "tpcb": "pgbench tpcb-like (default script)",
}


# ---------------------------------------------------------------- p99 latency

def log_files(res, prefix):
    out = []
    for f in glob.glob(os.path.join(res, glob.escape(prefix)) + ".*"):
        rest = f[len(os.path.join(res, prefix)) + 1:]
        if rest.removesuffix(".gz").replace(".", "").isdigit():
            out.append(f)
    return sorted(out)


def latencies_us(path):
    """Per-transaction latencies (us) of one pgbench log file.  Line format:
    client_id transaction_no time script_no time_epoch time_us [...];
    time is 'failed' / 'skipped' for transactions that did not complete."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    lat, bad = [], 0
    for line in data.split(b"\n"):
        parts = line.split(b" ", 3)
        if len(parts) < 3:
            continue
        try:
            lat.append(int(parts[2]))
        except ValueError:
            bad += 1
    return lat, bad


def percentile(sorted_vals, q):
    if not sorted_vals:
        return None
    k = max(0, math.ceil(q * len(sorted_vals)) - 1)
    return sorted_vals[k]


def compute_p99(res, runs):
    cache_path = os.path.join(res, "p99-cache.json")
    try:
        with open(cache_path) as f:
            cache = json.load(f)
    except (OSError, ValueError):
        cache = {}
    changed = False
    for r in runs:
        prefix = r.get("log_prefix")
        if not prefix:
            continue
        files = log_files(res, prefix)
        key = prefix + "|" + ",".join(f"{os.path.basename(f)}:{os.path.getsize(f)}" for f in files)
        if key not in cache:
            lat, bad = [], 0
            for f in files:
                l, b = latencies_us(f)
                lat += l
                bad += b
            lat.sort()
            p = percentile(lat, 0.99)
            cache[key] = {"p99_ms": round(p / 1000.0, 3) if p is not None else None,
                          "p50_ms": round(percentile(lat, 0.5) / 1000.0, 3) if lat else None,
                          "logged_tx": len(lat), "logged_not_done": bad}
            changed = True
        r.update(cache[key])
    if changed:
        with open(cache_path, "w") as f:
            json.dump(cache, f)


# ---------------------------------------------------------------- formatting

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt_num(v, digits):
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def cell(vals, digits=0, spread=True):
    """median [min–max] of the values (None left out)."""
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    m = fmt_num(statistics.median(vals), digits)
    if not spread or len(vals) == 1:
        return m
    return f"{m} [{fmt_num(min(vals), digits)}–{fmt_num(max(vals), digits)}]"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}×"


def kb_to_mb(v):
    return v / 1024.0 if v is not None else None


def table(header, rows):
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" if i == 0 else "--:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def ok(r):
    return "error" not in r


def ordered(targets):
    return [t for t in TARGETS if t in targets] + sorted(t for t in targets if t not in TARGETS)


# ---------------------------------------------------------------- sections

def header_lines(meta, runs):
    m = meta
    lines = [f"# Sluice benchmark — {m.get('timestamp', '?')}"
             + (" (quick smoke run)" if str(m.get("quick")) == "1" else ""), ""]
    lines.append(f"- **Machine**: {m.get('nproc', '?')} CPUs ({m.get('cpu_model', '?')}), "
                 f"{m.get('mem_total', '?')} RAM, {m.get('kernel', '?')}")
    lines.append(f"- **Versions**: PostgreSQL {m.get('postgresql', '?')}; {m.get('pgbouncer', '?')}; "
                 f"{m.get('sluice', '?')} (git {m.get('sluice_git', '?')}); {m.get('pgbench', '?')}")
    lines.append(f"- **Setup**: transaction pooling, pool size {m.get('pool', '?')}, "
                 f"max_client_conn 12000, no connection logging; poolers log in to PostgreSQL over "
                 f"TCP 127.0.0.1 with SCRAM (no TLS), clients are trusted; direct = pgbench over TCP "
                 f"with SCRAM (skipped above {m.get('direct_max', '?')} clients); 1:1 relay = a forwarder that only "
                 f"does recv + send per readable socket, one backend per client "
                 f"(scripts/min_relay.c; skipped like direct): what relaying alone costs "
                 f"on this machine. pgbench scale "
                 f"{m.get('scale', '?')}, `-n -j {m.get('threads', '?')}`, `-T` {m.get('duration_s', '?')} s "
                 f"(+ {m.get('conn_allow_ms', '?')} ms per client through a pooler, "
                 f"{m.get('direct_conn_allow_ms', '?')} ms per client direct and relay, rounded to whole "
                 f"seconds, for the initial logins) × {m.get('reps', '?')} repetitions, "
                 f"targets interleaved with the order "
                 f"rotated per repetition; before each run TRUNCATE pgbench_history + VACUUM + "
                 f"CHECKPOINT, a fresh pooler process and a {m.get('warmup_s', '?')} s warm-up. "
                 f"Client, pooler and server share the machine.")
    lines.append("- **Columns**: median [min–max] over repetitions. TPS = pgbench's \"without "
                 "initial connection time\"; p99 from the per-transaction logs; pooler µs/tx = "
                 "pooler utime+stime (/proc/PID/stat) in the measured window (after all clients "
                 "connected) ÷ transactions in it; RSS = pooler VmHWM (peak, incl. warm-up).")
    busy = [r.get("sys_busy_pct") for r in runs if r.get("kind") == "pgbench"]
    busy = [b for b in busy if b is not None]
    if busy:
        lines.append(f"- Machine CPU busy during runs (all processes, incl. the benchmark itself): "
                     f"median {statistics.median(busy):.0f} %, max {max(busy):.0f} %.")
    lines.append("")
    return lines


def pgbench_sections(meta, runs):
    pr = [r for r in runs if r.get("kind") == "pgbench"]
    if not pr:
        return []
    workloads = []
    for w in (meta.get("workloads") or "").split() + [r["workload"] for r in pr]:
        if w not in workloads and any(r["workload"] == w for r in pr):
            workloads.append(w)
    clients = sorted({r["clients"] for r in pr})

    def sel(w, c, t):
        return [r for r in pr if r["workload"] == w and r["clients"] == c and r["target"] == t]

    def med_of(w, c, t, key):
        return med([r.get(key) for r in sel(w, c, t) if ok(r)])

    lines = ["## Throughput overview (median TPS)", ""]
    rows = []
    for w in workloads:
        for c in clients:
            if not any(sel(w, c, t) for t in TARGETS):
                continue
            row = [w, c]
            for t in TARGETS:
                rs = sel(w, c, t)
                good = [r for r in rs if ok(r)]
                if not rs:
                    row.append("–")
                elif not good:
                    row.append("failed")
                else:
                    row.append(fmt_num(med([r["tps"] for r in good]), 0)
                               + ("" if len(good) == len(rs) else f" ({len(rs) - len(good)} failed)"))
            s, b, d = (med_of(w, c, t, "tps") for t in ("sluice", "pgbouncer", "direct"))
            su, bu, ru = (med_of(w, c, t, "pooler_us_tx") for t in ("sluice", "pgbouncer", "relay"))
            row += [ratio(s, b), ratio(s, d), ratio(su, bu), ratio(su, ru), ratio(bu, ru)]
            rows.append(row)
    lines += table(["workload", "clients"] + [NAMES[t] for t in TARGETS]
                   + ["Sluice/PgBouncer TPS", "Sluice/direct TPS", "Sluice/PgBouncer µs/tx",
                      "Sluice/relay µs/tx", "PgBouncer/relay µs/tx"], rows)
    lines.append("")

    for w in workloads:
        lines += [f"## {w} — {WORKLOAD_DESC.get(w, w)}", ""]
        for c in clients:
            present = ordered({r["target"] for r in pr if r["workload"] == w and r["clients"] == c})
            if not present:
                continue
            lines += [f"### {w}, {c} clients", ""]
            rows, notes = [], []
            for t in present:
                rs = sel(w, c, t)
                good = [r for r in rs if ok(r)]
                pooler = t != "direct"
                rows.append([
                    NAMES.get(t, t),
                    cell([r["tps"] for r in good], 0) if good else "failed",
                    cell([r.get("lat_ms") for r in good], 2),
                    cell([r.get("p99_ms") for r in good], 2),
                    cell([r.get("pooler_us_tx") for r in good], 1) if pooler else "–",
                    cell([kb_to_mb(r.get("pooler_rss_peak_kb")) for r in rs], 1) if pooler else "–",
                    cell([(r.get("failed") or 0) for r in rs], 0, spread=False)
                    + (f" / {sum(r.get('aborted_clients') or 0 for r in rs)} aborted clients"
                       if any(r.get("aborted_clients") for r in rs) else ""),
                    f"{len(good)}/{len(rs)}",
                ])
                for r in rs:
                    if not ok(r):
                        notes.append(f"- {NAMES.get(t, t)} rep {r.get('rep')}: {r['error']}"
                                     + (f" ({r['aborted_clients']} of {r['clients']} clients aborted,"
                                        f" {r.get('txns')} transactions done)"
                                        if r.get("aborted_clients") else ""))
            lines += table(["target", "TPS", "latency avg ms", "latency p99 ms", "pooler µs/tx",
                            "pooler peak RSS MB", "failed tx", "ok runs"], rows)
            tps = {t: med_of(w, c, t, "tps") for t in TARGETS}
            p99 = {t: med_of(w, c, t, "p99_ms") for t in TARGETS}
            us = {t: med_of(w, c, t, "pooler_us_tx") for t in TARGETS}
            rss = {t: med([kb_to_mb(r.get("pooler_rss_peak_kb")) for r in sel(w, c, t)]) for t in TARGETS}
            ratios = []

            def ratio_text(label, pairs):
                parts = [f"{name} {ratio(a, b)}" for name, a, b in pairs if ratio(a, b) != "–"]
                if parts:
                    ratios.append(f"{label}: " + ", ".join(parts))
            if "sluice" in present and "pgbouncer" in present:
                ratio_text("Sluice/PgBouncer", [
                    ("TPS", tps["sluice"], tps["pgbouncer"]),
                    ("p99", p99["sluice"], p99["pgbouncer"]),
                    ("µs/tx", us["sluice"], us["pgbouncer"]),
                    ("RSS", rss["sluice"], rss["pgbouncer"])])
            if "sluice" in present and "direct" in present:
                ratio_text("Sluice/direct", [("TPS", tps["sluice"], tps["direct"]),
                                             ("p99", p99["sluice"], p99["direct"])])
            if "relay" in present:
                ratio_text("against the 1:1 relay (µs/tx)",
                           [(NAMES[t], us[t], us["relay"]) for t in ("sluice", "pgbouncer")
                            if t in present])
            lines.append("")
            if ratios:
                lines += ["Ratios (of medians): " + "; ".join(ratios) + ".", ""]
            if notes:
                lines += ["Failed runs:", ""] + notes + [""]
    return lines


def idle_section(meta, runs):
    ir = [r for r in runs if r.get("kind") == "idle"]
    if not ir:
        return []
    n = ir[0].get("clients")
    lines = [f"## Idle connections ({n:,} authenticated idle clients per pooler)", "",
             "Bytes per connection = (pooler VmRSS after − before) ÷ connections opened, "
             "1 s after the last login; before = fresh pooler with one client that ran "
             "`SELECT 1`. Kernel socket memory is not included.", ""]
    rows, notes, per = [], [], {}
    for t in ordered({r["target"] for r in ir}):
        rs = [r for r in ir if r["target"] == t]
        good = [r for r in rs if ok(r)]
        per[t] = med([r.get("bytes_per_conn") for r in good])
        rows.append([NAMES.get(t, t),
                     cell([r.get("bytes_per_conn") for r in good], 0) if good else "failed",
                     cell([kb_to_mb(r.get("rss_before_kb")) for r in rs], 1),
                     cell([kb_to_mb(r.get("rss_after_kb")) for r in rs], 1),
                     cell([r.get("open_s") for r in rs], 2),
                     f"{len(good)}/{len(rs)}"])
        for r in rs:
            if not ok(r):
                notes.append(f"- {NAMES.get(t, t)} rep {r.get('rep')}: {r['error']} "
                             f"(opened {r.get('opened')}/{r.get('clients')}, "
                             f"{r.get('closed_by_pooler')} closed by the pooler)")
    lines += table(["target", "bytes / idle connection", "RSS before MB", "RSS after MB",
                    "time to open all s", "ok runs"], rows)
    lines.append("")
    if "sluice" in per and "pgbouncer" in per:
        lines += [f"Sluice/PgBouncer bytes per connection: {ratio(per['sluice'], per['pgbouncer'])}.", ""]
    if notes:
        lines += ["Failed runs:", ""] + notes + [""]
    return lines


def storm_section(meta, runs):
    sr = [r for r in runs if r.get("kind") == "storm"]
    if not sr:
        return []
    lines = [f"## Connection storm (`pgbench -C -S -c 10 -j {meta.get('threads', 2)}`, "
             f"{meta.get('storm_duration_s', '?')} s)", "",
             "Every transaction opens a new client connection (trusted, so no SCRAM on the "
             "client side) and closes it; the pool's server connections stay open. "
             "Connections/s = pgbench TPS; pooler µs/connection = pooler CPU over the whole "
             "pgbench run ÷ connections.", ""]
    rows, notes, cps, us = [], [], {}, {}
    for t in ordered({r["target"] for r in sr}):
        rs = [r for r in sr if r["target"] == t]
        good = [r for r in rs if ok(r)]
        cps[t] = med([r.get("tps") for r in good])
        us[t] = med([r.get("pooler_us_tx") for r in good])
        rows.append([NAMES.get(t, t),
                     cell([r.get("tps") for r in good], 0) if good else "failed",
                     cell([r.get("pooler_us_tx") for r in good], 1),
                     cell([r.get("pooler_cpu_pct") for r in good], 0),
                     cell([r.get("lat_ms") for r in good], 2),
                     cell([kb_to_mb(r.get("pooler_rss_peak_kb")) for r in rs], 1),
                     f"{len(good)}/{len(rs)}"])
        for r in rs:
            if not ok(r):
                notes.append(f"- {NAMES.get(t, t)} rep {r.get('rep')}: {r['error']}")
    lines += table(["target", "connections/s", "pooler µs/connection", "pooler CPU %",
                    "latency avg ms", "pooler peak RSS MB", "ok runs"], rows)
    lines.append("")
    if "sluice" in cps and "pgbouncer" in cps:
        lines += [f"Sluice/PgBouncer: connections/s {ratio(cps['sluice'], cps['pgbouncer'])}, "
                  f"µs/connection {ratio(us['sluice'], us['pgbouncer'])}.", ""]
    if notes:
        lines += ["Failed runs:", ""] + notes + [""]
    return lines


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    res = argv[1]
    to_stdout = "--stdout" in argv[2:]
    try:
        with open(os.path.join(res, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        meta = {}
    runs = []
    with open(os.path.join(res, "runs.jsonl")) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if line:
                try:
                    runs.append(json.loads(line))
                except ValueError:
                    print(f"bench_report: runs.jsonl line {n}: not JSON, skipped", file=sys.stderr)
    compute_p99(res, [r for r in runs if r.get("kind") == "pgbench"])
    lines = header_lines(meta, runs)
    lines += pgbench_sections(meta, runs)
    lines += idle_section(meta, runs)
    lines += storm_section(meta, runs)
    text = "\n".join(lines).rstrip() + "\n"
    if to_stdout:
        sys.stdout.write(text)
    else:
        with open(os.path.join(res, "summary.md"), "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
