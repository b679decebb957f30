"""The error raised for a site's bad configuration or data."""

from __future__ import annotations


class SiteDataError(ValueError):
    """A site's config or data is unusable; the message names the file, row or key.

    ``public`` is the same fact stripped of file paths and case ids, safe to send to the server;
    without one, only a fixed sentence leaves the site (the message itself never does).
    """

    def __init__(self, message: str, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public if public is not None else UNSPECIFIED

    @classmethod
    def public_fact(cls, message: str) -> SiteDataError:
        """An error whose message holds no path and no case id (built from run settings and counts only): sent as it is."""
        return cls(message, message)


UNSPECIFIED = "the site's config or data is unusable for this message (the site's log has the details)"
