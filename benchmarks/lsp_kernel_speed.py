"""docs/performance.md, "where a distillation epoch goes now": one LSP student-side kernel term,
forward + backward, on a PPI-batch-sized graph, three ways, alternating in one process:

- ``autograd``: ``kernel(h[src], h[dst])`` as plain autograd ops (keeps [E, F] for backward);
- ``edge_kernel``: ``mskd.losses.edge_kernel`` (chunked, in place, written-out gradient);
- ``compiled`` (``--compile``): the plain form through ``torch.compile`` (needs a C++ compiler).

    python benchmarks/lsp_kernel_speed.py [--nodes 22453 --edges 135000 --width 136] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mskd.losses import KernelParams, edge_kernel, l1_kernel


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=22_453)  # one 2-graph PPI-like batch
    ap.add_argument("--edges", type=int, default=135_000)
    ap.add_argument("--width", type=int, default=136)  # the ppi student's hidden width
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(args.nodes, args.width, generator=gen, requires_grad=True)
    src, dst = torch.randint(0, args.nodes, (2, args.edges), generator=gen)
    params = KernelParams()

    def plain(h, s, d):
        return l1_kernel(h[s], h[d], params)

    ways = {"autograd": plain,
            "edge_kernel": lambda h, s, d: edge_kernel(h, s, d, l1_kernel, params)}
    if args.compile:
        ways["compiled"] = torch.compile(plain, dynamic=True)
    for fn in ways.values():  # warm-up (and compilation)
        fn(h, src, dst).sum().backward()
    times: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(args.repeats):
        for name, fn in ways.items():
            t0 = time.perf_counter()
            k = fn(h, src, dst)
            k.backward(torch.ones_like(k))
            times[name].append(time.perf_counter() - t0)
    print(f"threads {torch.get_num_threads()}, N {args.nodes}, E {args.edges}, F {args.width}; "
          f"median of {args.repeats}, forward + backward of one L1 term")
    for name, t in times.items():
        print(f"{name:<12} {statistics.median(t):.4f} s")


if __name__ == "__main__":
    main()
