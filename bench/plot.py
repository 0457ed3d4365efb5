"""The benchmark's picture: throughput and latency against concurrency, ours beside bare and floor."""
from __future__ import annotations

from pathlib import Path
from typing import Any

STYLE = {
    "bare": dict(color="#9e9e9e", marker="o", label="bare (constant TwiML)"),
    "floor": dict(color="#1f77b4", marker="s", label="floor (signature + Redis + 1 row + 1 job)"),
    "ours_sms": dict(color="#d62728", marker="^", label="ours: SMS turn"),
    "ours_voice": dict(color="#ff7f0e", marker="v", label="ours: voice turn"),
}


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    load = results["load"]
    cs = sorted(int(c) for c in load["bare"])
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    (ax_rps, ax_p99), (ax_ratio, ax_alert) = axes
    machine = results["machine"]
    fig.suptitle(f"Triage line vs its floor - {machine['cpu_model']}, {machine['usable_cores']} cores, "
                 f"gunicorn as in the Procfile - {results['generated_at']}", fontsize=11)

    for target, style in STYLE.items():
        rps = [load[target][str(c)]["rps"] for c in cs]
        p99 = [load[target][str(c)]["latency_ms"]["p99"] for c in cs]
        p50 = [load[target][str(c)]["latency_ms"]["p50"] for c in cs]
        ax_rps.plot(cs, rps, **style)
        for c, v in zip(cs, rps):
            ax_rps.annotate(f"{v:,.0f}", (c, v), textcoords="offset points", xytext=(4, 4), fontsize=7,
                            color=style["color"])
        ax_p99.plot(cs, p99, **style)
        ax_p99.plot(cs, p50, color=style["color"], linestyle=":", marker=style["marker"], alpha=0.5,
                    markersize=4)
        flagged = [i for i, c in enumerate(cs) if load[target][str(c)].get("problems")]
        for ax, values in ((ax_rps, rps), (ax_p99, p99)):
            ax.scatter([cs[i] for i in flagged], [values[i] for i in flagged], s=180, facecolors="none",
                       edgecolors="black", linewidths=0.8, zorder=3)
    ax_rps.set(title="Throughput (higher is better)", xlabel="concurrent connections", ylabel="requests/s",
               yscale="log")
    ax_p99.axhline(60, color="black", linestyle="--", linewidth=1)
    ax_p99.annotate("target: p99 <= 60 ms at 32", (cs[0], 60), textcoords="offset points", xytext=(0, 4),
                    fontsize=8)
    ax_p99.set(title="Latency: p99 solid, p50 dotted (lower is better)", xlabel="concurrent connections",
               ylabel="ms", yscale="log")

    width = 0.35
    xs = range(len(cs))
    for i, target in enumerate(("ours_sms", "ours_voice")):
        ratios = [results["ratios"][target][str(c)]["vs_floor"] for c in cs]
        bars = ax_ratio.bar([x + (i - 0.5) * width for x in xs], ratios, width, color=STYLE[target]["color"],
                            label=STYLE[target]["label"])
        for bar, r in zip(bars, ratios):
            ax_ratio.annotate(f"{r:.2f}x", (bar.get_x() + bar.get_width() / 2, r), ha="center",
                              textcoords="offset points", xytext=(0, 2), fontsize=8)
    ax_ratio.axhline(0.8, color="black", linestyle="--", linewidth=1)
    ax_ratio.annotate("target 0.8x", (-0.45, 0.8), textcoords="offset points", xytext=(0, 3), fontsize=8)
    ax_ratio.set_xticks(list(xs), [str(c) for c in cs])
    ax_ratio.set(title="Our throughput / floor throughput", xlabel="concurrent connections", ylabel="ratio",
                 ylim=(0, max(1.05, ax_ratio.get_ylim()[1])))

    alert = results.get("emergency_to_alert")
    if alert and alert.get("samples_s"):
        samples = [s * 1000 for s in alert["samples_s"]]
        fraction = [(i + 1) / len(samples) for i in range(len(samples))]
        ax_alert.step(samples, fraction, where="post", color="#d62728")
        ax_alert.axvline(1000, color="black", linestyle="--", linewidth=1)
        ax_alert.annotate("target p99 < 1 s", (1000, 0.05), textcoords="offset points", xytext=(-90, 0), fontsize=8)
        first = alert["first_page_s"]
        ax_alert.set(title=f"Emergency webhook -> first page handed to Twilio (n={len(samples)})",
                     xlabel="ms after the completing webhook was sent", ylabel="fraction of emergencies",
                     ylim=(0, 1.02), xlim=(0, max(1100, max(samples) * 1.1)))
        ax_alert.text(0.03, 0.95, f"p50 {first['p50'] * 1000:.0f} ms\np99 {first['p99'] * 1000:.0f} ms\n"
                                  f"max {first['max'] * 1000:.0f} ms", transform=ax_alert.transAxes, va="top",
                      fontsize=9, bbox=dict(boxstyle="round", facecolor="white", alpha=0.8))
    else:
        ax_alert.set_axis_off()
    plain = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")
    sparse = FuncFormatter(lambda v, _: f"{v:,.0f}" if f"{v:.0f}"[0] in "25" else "")
    for ax in (ax_rps, ax_p99):
        ax.set_xscale("log", base=2)
        ax.set_xticks(cs, [str(c) for c in cs])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(sparse if ax is ax_rps else NullFormatter())
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.grid(True, which="both", alpha=0.3)
    ax_rps.legend(fontsize=8, loc="center right", bbox_to_anchor=(1.0, 0.62))
    ax_ratio.legend(fontsize=8, loc="upper right")
    ax_alert.grid(True, alpha=0.3)
    fig.text(0.01, 0.005, "Circled points: runs flagged in the JSON (load.<target>.<c>.problems), most often because "
             "other processes used the shared CPUs meanwhile; read them with care.", fontsize=8, color="#444444")
    fig.tight_layout(rect=(0, 0.015, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
