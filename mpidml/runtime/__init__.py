"""Fail-together errors, abort on unhandled exceptions, fault injection."""

from .errors import CollectiveError, MpidmlError, fail_together, install_abort_hook

__all__ = ["CollectiveError", "MpidmlError", "fail_together", "install_abort_hook"]
