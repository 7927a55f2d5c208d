"""nablafx: differentiable audio effect modeling."""
__version__ = "0.1.0"
