"""The error raised for a site's bad configuration or data."""

from __future__ import annotations


class SiteDataError(ValueError):
    """A site's config or data is unusable; the message names the file, row or key.

    ``public`` is the same fact stripped of file paths and case ids, safe to send to the server.
    """

    def __init__(self, message: str, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public if public is not None else message
