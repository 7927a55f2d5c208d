"""Model families; importing this package registers every family with the registry."""

from nablafx.models import (
    gcn,  # noqa: F401
    graybox,  # noqa: F401
    lstm,  # noqa: F401
    s4,  # noqa: F401
    tcn,  # noqa: F401
)
