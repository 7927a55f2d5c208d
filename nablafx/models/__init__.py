"""Model families; importing this package registers every family with the registry."""

from nablafx.models import graybox  # noqa: F401
from nablafx.models import lstm  # noqa: F401
from nablafx.models import tcn  # noqa: F401
from nablafx.models import gcn  # noqa: F401
from nablafx.models import s4  # noqa: F401
