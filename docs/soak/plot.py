#!/usr/bin/env python3
"""Renders docs/soak/rss.png from a soak CSV (chaos/src/bin/soak.rs --csv).

    python3 docs/soak/plot.py docs/soak/soak.csv docs/soak/rss.png [warm-up seconds]

Needs matplotlib (pip install matplotlib).
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    source, target = sys.argv[1], sys.argv[2]
    warmup = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    with open(source) as f:
        rows = list(csv.DictReader(f))
    t = [float(r["t_s"]) / 60 for r in rows]
    rss = [int(r["rss_kib"]) / 1024 for r in rows]
    hwm = [int(r["hwm_kib"]) / 1024 for r in rows]
    executors = sorted({k.split("_")[0] for k in rows[0] if k.startswith("e") and k[1].isdigit()})
    consumers = [k[: -len("_limit")] for k in rows[0] if k.endswith("_limit")]

    def fill(used, bound):
        """Each structure's fullest, as a percentage of its bound."""
        return [100 * max(int(r[f"{x}_{used}"]) / max(int(r[f"{x}_{bound}"]), 1) for x in executors) for r in rows]

    series = [
        ("stream caches: events / capacity (fullest of 4)", fill("stream_events", "stream_capacity")),
        ("stream caches: streams / capacity", fill("stream_streams", "stream_capacity")),
        ("view caches: bytes / capacity", fill("view_bytes", "view_capacity")),
    ]
    for c in consumers:
        series.append((f"{c}: buffered / limit", [100 * int(r[f"{c}_buffered"]) / int(r[f"{c}_limit"]) for r in rows]))

    after = [(x, y) for x, y in zip(t, rss) if x * 60 >= warmup]
    n = len(after)
    mx = sum(x for x, _ in after) / n
    my = sum(y for _, y in after) / n
    slope = sum((x - mx) * (y - my) for x, y in after) / sum((x - mx) ** 2 for x, _ in after)
    fit = [my + slope * (x - mx) for x, _ in after]

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, height_ratios=[3, 2])
    top.plot(t, rss, label="VmRSS", color="tab:blue")
    top.plot(t, hwm, label="VmHWM", color="tab:gray", linestyle=":")
    top.plot([x for x, _ in after], fit, label=f"least squares after warm-up: {slope:+.3f} MiB/min", color="tab:red")
    top.axvspan(0, warmup / 60, color="0.9", label="warm-up")
    top.set_ylim(0, max(hwm) * 1.25)
    top.set_ylabel("MiB")
    top.set_title("EventCore soak: resident memory")
    top.legend(loc="lower right")
    top.grid(alpha=0.3)

    for label, values in series:
        bottom.plot(t, values, label=label, linewidth=1)
    bottom.set_xlabel("minutes")
    bottom.set_ylabel("% of its bound")
    bottom.legend(loc="upper left", fontsize="small", ncol=2)
    bottom.grid(alpha=0.3)
    bottom.set_ylim(0, 160)
    fig.tight_layout()
    fig.savefig(target, dpi=100)


if __name__ == "__main__":
    main()
