"""Pure DSP functions on tensors: gain staging, biquads, IIR/FIR filtering, nonlinearities,
resampling, a compressor and a tone stack.  No modules, no state held: state goes in and comes out.
"""

from nablafx.dsp import analysis, biquad, compressor, filters, fir, gain, nonlinear, resample, tonestack  # noqa: F401
