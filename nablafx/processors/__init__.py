"""Differentiable DSP blocks (``nn.Module``): each wraps a :mod:`nablafx.dsp` function with named,
normalised parameters and their real ranges.  Importing the package registers every type.
"""

from nablafx.processors import compressor, eq, fir, gain, nonlinear, tonestack  # noqa: F401
from nablafx.processors.base import PROCESSORS, ParamRange, Processor, build_processor  # noqa: F401
