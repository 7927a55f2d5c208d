"""Controllers: where a processor's normalised parameters come from.

``static`` (a learned constant), ``static-cond`` (MLP of the knobs), ``dynamic`` (LSTM over frame
features of the signal, state carried across blocks), ``dynamic-cond`` (the same plus the knobs),
``none`` (processors without control parameters).
"""

from nablafx.controllers import dynamic, static  # noqa: F401
from nablafx.controllers.base import CONTROLLERS, Controller, build_controller  # noqa: F401
