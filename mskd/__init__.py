"""mskd: multi-scale knowledge distillation from multiple graph neural networks.

Pipeline, one module per stage: ``data`` -> ``models`` -> ``losses``/``attention`` ->
``train`` -> ``teachers`` -> ``distill`` -> ``evaluate`` -> ``report``; ``cli`` sits on top.
"""

__version__ = "0.1.0"
