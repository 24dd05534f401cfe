"""The error a request gets: :class:`ClientError` carries an HTTP status and a message in the
client's terms (what is wrong with the request, never a Python exception name); the app turns it
into a JSON body ``{"error": message, ...extra}``."""

__all__ = ["ClientError", "unknown_key", "missing_key"]


class ClientError(Exception):
    """An HTTP error status, its one-line message, optional headers and extra JSON fields."""

    def __init__(self, status, message, headers=None, **extra):
        super().__init__(message)
        self.status, self.message, self.headers, self.extra = status, message, headers, extra


def unknown_key():
    return ClientError(401, "unknown or revoked API key", {"WWW-Authenticate": "Bearer"})


def missing_key():
    return ClientError(401, "missing API key: send the header 'Authorization: Bearer TOKEN'",
                       {"WWW-Authenticate": "Bearer"})
