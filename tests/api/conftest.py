"""Fixtures of the API tests: ``fake`` (a scripted local IMS server) and
``ims`` (an open IMSSession pointed at it)."""

from ims_fake import fake, ims  # noqa: F401 - fixtures
