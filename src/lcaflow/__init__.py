"""Loss Change Allocation (Lan et al., NeurIPS 2019) as a reproducible workflow."""

__version__ = "0.1.0"
