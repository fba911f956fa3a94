"""mskd: multi-scale knowledge distillation from multiple graph neural networks.

Pipeline, one module per stage: ``data`` -> ``models`` -> ``losses``/``attention`` ->
``train`` -> ``teachers`` -> ``distill`` -> ``evaluate`` -> ``report``; ``cli`` sits on top.
"""

import os

# Transparent huge pages for torch's large CPU tensors. A GAT layer on a PPI batch allocates
# message tensors of hundreds of MB per op; with 4 KiB pages, faulting them in cost more kernel
# time than the arithmetic (docs/performance.md: a PPI-like student step 4.1 s -> 2.1 s). torch
# reads the variable once, at its first allocation, so it has to be set before torch is imported;
# setdefault keeps a user's explicit THP_MEM_ALLOC_ENABLE=0.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
