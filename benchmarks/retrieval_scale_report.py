"""Markdown tables from a retrieval_scale.py JSON report.  usage: retrieval_scale_report.py scale.json"""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    report = json.loads(open(path).read())
    for size in report["sizes"]:
        pool3 = size.get("pool3_tokens_per_page")
        print(f"\n{size['pages']} pages ({size['tokens_per_page']:.0f} tokens/page"
              + (f"; pool3 {pool3:.0f}" if pool3 else "")
              + f"); numpy exact truth {size['numpy_exact_truth_s']:.0f} s\n")
        print("| strategy | p50 ms | p95 ms | R@10 vs exact | visual KB/page (vectors used) | shard KB/page | "
              "upsert pages/s | reopen s | RSS growth MiB |")
        print("|---|---|---|---|---|---|---|---|---|")
        for row in size["rows"]:
            visual = row.get("visual_bytes_per_page")
            print(
                f"| {row['strategy']} (n={row['queries']}) | {row['p50_ms']:.0f} | {row['p95_ms']:.0f} | "
                f"{row['recall_at_10']:.3f} | {visual / 1024:.0f} | " if visual is not None else
                f"| {row['strategy']} (n={row['queries']}) | {row['p50_ms']:.0f} | {row['p95_ms']:.0f} | "
                f"{row['recall_at_10']:.3f} | – | ",
                end="",
            )
            rss = row.get("rss_growth_mib")
            print(f"{row['shard_bytes_per_page'] / 1024:.0f} | {row['upsert_pages_per_s']:.0f} | "
                  f"{row['reopen_s']:.2f} | {f'{rss:.0f}' if rss is not None else '–'} |")


if __name__ == "__main__":
    main(sys.argv[1])
