"""A three-knob (bass / mid / treble) passive tone stack, as in Fender and Marshall amplifiers.

Analysis after D. T. Yeh and J. O. Smith, "Discretization of the '59 Fender Bassman tone stack",
DAFx 2006.  The circuit: the input drives ``C1`` into the top of the treble pot ``R1`` (output at its
wiper) and the slope resistor ``R4`` into the node joining ``C2`` and ``C3``; ``C2`` goes to the
bottom of the treble pot, which is the top of the bass pot ``R2`` (a variable resistor ``l·R2``)
whose other end meets the mid pot ``R3``; ``C3`` goes to the mid pot's wiper, ``m·R3`` above ground.
Treble ``t`` is the fraction of ``R1`` between the wiper and the bottom.  Nodal analysis gives the
third-order transfer function (unloaded output)::

    H(s) = (b1 s + b2 s² + b3 s³) / (1 + a1 s + a2 s² + a3 s³)

with the coefficients in :func:`analog_coeffs` (checked against a numerical nodal solution of the
circuit in the tests).  The bilinear transform (``c = 2 f_s``, as in the paper) gives a third-order
digital filter run by :func:`nablafx.dsp.filters.iir_filter`.  Knob values ``t, m, l`` are in [0, 1].

Stability at the knob limits: the circuit is passive, so its poles are real and negative and the
bilinear transform puts them in (−1, 1) — except where the order drops.  ``a3`` factors as
``C1C2C3 [l m R2R3(R1 + R4) + l R1R2R4 + (1 − m)(m R3²(R1 + R4) + R1R3R4)]``: it vanishes at
``l = 0, m = 1`` (bass pot shorted, mid wiper at the top), one analog pole runs off to −∞ and its
digital image lands on ``z = −1``, on the unit circle (radius 1 − 5e−15 in float64), cancelled only by
a numerator zero.  :func:`tonestack_coeffs` therefore limits the mid knob to :data:`MID_MAX`
(= a 2.5 Ω end resistance on the Fender's 25 kΩ pot): every pole is then at least ~9e−4 inside the
unit circle at 48 kHz and the response moves by less than 0.001 dB.
"""

from __future__ import annotations

import torch

from nablafx.dsp.filters import bilinear

#: largest mid knob value the digital filter uses (see the module docstring: stability at l = 0, m = 1)
MID_MAX = 1.0 - 1e-4

# component values (farads, ohms)
CIRCUITS: dict[str, dict[str, float]] = {
    # Fender '59 Bassman 5F6-A (values used by Yeh & Smith)
    "fender": dict(C1=250e-12, C2=20e-9, C3=20e-9, R1=250e3, R2=1e6, R3=25e3, R4=56e3),
    # Marshall JCM800 2203
    "marshall": dict(C1=470e-12, C2=22e-9, C3=22e-9, R1=220e3, R2=1e6, R3=22e3, R4=33e3),
}


def analog_coeffs(bass: torch.Tensor, mid: torch.Tensor, treble: torch.Tensor,
                  circuit: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Analog ``(b_s, a_s)`` in ascending powers of ``s``, each ``(..., 4)``."""
    c1, c2, c3 = circuit["C1"], circuit["C2"], circuit["C3"]
    r1, r2, r3, r4 = circuit["R1"], circuit["R2"], circuit["R3"], circuit["R4"]
    t, m, l = torch.broadcast_tensors(treble, mid, bass)
    m2 = m * m

    b1 = t * c1 * r1 + m * c3 * r3 + l * (c1 * r2 + c2 * r2) + (c1 * r3 + c2 * r3)
    b2 = (t * (c1 * c2 * r1 * r4 + c1 * c3 * r1 * r4)
          - m2 * (c1 * c3 * r3 ** 2 + c2 * c3 * r3 ** 2)
          + m * (c1 * c3 * r1 * r3 + c1 * c3 * r3 ** 2 + c2 * c3 * r3 ** 2)
          + l * (c1 * c2 * r1 * r2 + c1 * c2 * r2 * r4 + c1 * c3 * r2 * r4)
          + l * m * (c1 * c3 * r2 * r3 + c2 * c3 * r2 * r3)
          + (c1 * c2 * r1 * r3 + c1 * c2 * r3 * r4 + c1 * c3 * r3 * r4))
    c123 = c1 * c2 * c3
    b3 = (l * m * c123 * (r1 * r2 * r3 + r2 * r3 * r4)
          - m2 * c123 * (r1 * r3 ** 2 + r3 ** 2 * r4)
          + m * c123 * (r1 * r3 ** 2 + r3 ** 2 * r4)
          + t * c123 * r1 * r3 * r4
          - t * m * c123 * r1 * r3 * r4
          + t * l * c123 * r1 * r2 * r4)
    a1 = (c1 * r1 + c1 * r3 + c2 * r3 + c2 * r4 + c3 * r4) + m * c3 * r3 + l * (c1 * r2 + c2 * r2)
    a2 = (m * (c1 * c3 * r1 * r3 - c2 * c3 * r3 * r4 + c1 * c3 * r3 ** 2 + c2 * c3 * r3 ** 2)
          + l * m * (c1 * c3 * r2 * r3 + c2 * c3 * r2 * r3)
          - m2 * (c1 * c3 * r3 ** 2 + c2 * c3 * r3 ** 2)
          + l * (c1 * c2 * r2 * r4 + c1 * c2 * r1 * r2 + c1 * c3 * r2 * r4 + c2 * c3 * r2 * r4)
          + (c1 * c2 * r1 * r4 + c1 * c3 * r1 * r4 + c1 * c2 * r3 * r4
             + c1 * c2 * r1 * r3 + c1 * c3 * r3 * r4 + c2 * c3 * r3 * r4))
    a3 = (l * m * c123 * (r1 * r2 * r3 + r2 * r3 * r4)
          - m2 * c123 * (r1 * r3 ** 2 + r3 ** 2 * r4)
          + m * c123 * (r3 ** 2 * r4 + r1 * r3 ** 2 - r1 * r3 * r4)
          + l * c123 * r1 * r2 * r4
          + c123 * r1 * r3 * r4)
    zero = torch.zeros_like(b1)
    one = torch.ones_like(a1)
    return torch.stack([zero, b1, b2, b3], dim=-1), torch.stack([one, a1, a2, a3], dim=-1)


def tonestack_coeffs(bass, mid, treble, sample_rate: float, circuit: str | dict = "fender"):
    """Digital third-order ``(b, a)``, each ``(..., 4)``, for knob values in [0, 1].

    Computed and returned in float64 (the analog coefficients span ~15 decades, and a third-order
    direct form is sensitive to coefficient rounding); :func:`~nablafx.dsp.filters.iir_filter` runs
    in float64 anyway.  The mid knob is limited to :data:`MID_MAX` (poles strictly inside the unit
    circle for every knob setting).
    """
    if isinstance(circuit, str):
        if circuit not in CIRCUITS:
            raise ValueError(f"unknown tone stack circuit {circuit!r}; known: {', '.join(CIRCUITS)}")
        circuit = CIRCUITS[circuit]
    ref = bass if isinstance(bass, torch.Tensor) else torch.as_tensor(bass)
    bass, mid, treble = (torch.as_tensor(v, device=ref.device).to(torch.float64) for v in (bass, mid, treble))
    mid = mid.clamp(max=MID_MAX)
    b_s, a_s = analog_coeffs(bass, mid, treble, circuit)
    return bilinear(b_s, a_s, sample_rate)
