"""Model families; importing this package registers every family with the registry."""

from nablafx.models import lstm  # noqa: F401
