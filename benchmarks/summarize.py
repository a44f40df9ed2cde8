"""Print a pytest-benchmark JSON file as a Markdown table with steps/s and GFLOP/s.

    pytest benchmarks --benchmark-only --benchmark-json=bench.json
    python benchmarks/summarize.py bench.json
"""

import json
import sys


def frontier(cases: list[dict]) -> None:
    """The locality frontier of the grid's cases (a user's rule beside ours), the table
    every locality report carries (spikebench.studies.frontier)."""
    import pandas as pd

    from spikebench.studies.frontier import frontier_markdown, frontier_table

    rows = [{"method": i["rule"], "model": i["arch"], "seed": i["seed"], "acc": i["test_acc"],
             "step_ms": i["step_ms"], "peak_mb": i["step_peak_mb"],
             "space": i["credit_space"], "time": i["credit_time"]}
            for i in (b["extra_info"] for b in cases) if "step_ms" in i]
    if rows:
        print(frontier_markdown(frontier_table(pd.DataFrame(rows))))
        print()


def main(path: str) -> None:
    data = json.load(open(path))
    by_group: dict[str, dict[str, dict]] = {}
    for b in data["benchmarks"]:
        by_group.setdefault(b["group"], {})[b["name"]] = b
    cases = [b for b in data["benchmarks"] if "test_acc" in b.get("extra_info", {})]
    if cases:  # suite grids (benchmarks/suites, the spikebench pytest plugin)
        print("| case | s (epoch + eval) | epoch s | test acc % | eff. SynOps | "
              "activation sparsity | peak MB |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for b in sorted(cases, key=lambda b: b["param"] or b["name"]):
            i = b["extra_info"]
            print(f"| {b['param']} | {b['stats']['mean']:.2f} | {i['epoch_s']:.2f} | "
                  f"{100 * i['test_acc']:.1f} | {i['synops_ac'] + i['synops_mac']:.3g} | "
                  f"{i['activation_sparsity']:.3f} | {i['peak_rss_mb']:.0f} |")
        print()
        frontier(cases)
        by_group = {g: v for g, v in by_group.items()
                    if not any("test_acc" in b.get("extra_info", {}) for b in v.values())}
        if not by_group:
            return
    memory = {g: v for g, v in by_group.items() if g.startswith("memory-")}
    if memory:
        print("| rule / arch | T | peak MB of the step |")
        print("|---|---:|---:|")
        for group, impls in sorted(memory.items()):
            for b in sorted(impls.values(), key=lambda b: b["params"]["steps"]):
                print(f"| {group[7:]} | {b['params']['steps']} | "
                      f"{b['extra_info']['peak_mb']:.1f} |")
        print()
    print("| workload | impl | mean ms | GFLOP/s | share of GEMM FLOP/s | "
          "speed vs the fastest peer |")
    print("|---|---|---:|---:|---:|---:|")
    for group, impls in sorted(by_group.items()):
        if group in memory:
            continue
        # the peers: the rows marked extra_info["peer"] (norse, snnTorch, SpikingJelly)
        peers = [b for b in impls.values() if b.get("extra_info", {}).get("peer")]
        ref = min(peers, key=lambda b: b["stats"]["mean"]) if peers else None
        peak = next((b for k, b in impls.items() if "gemm" in k), None)
        peak_rate = peak["extra_info"]["flops"] / peak["stats"]["mean"] if peak else None
        for name, b in sorted(impls.items(), key=lambda kv: kv[1]["stats"]["mean"]):
            mean = b["stats"]["mean"]
            flops = b.get("extra_info", {}).get("flops")
            gflops = f"{flops / mean / 1e9:.1f}" if flops else "–"
            share = f"{flops / mean / peak_rate:.0%}" if flops and peak_rate else "–"
            rel = f"{ref['stats']['mean'] / mean:.2f}x" if ref else "–"
            print(f"| {group} | {b['params'].get('impl', name)} | {1e3 * mean:.1f} | "
                  f"{gflops} | {share} | {rel} |")


if __name__ == "__main__":
    main(sys.argv[1])
