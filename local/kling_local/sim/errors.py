"""Kling's business codes, their HTTP statuses and messages, in one table the server answers from."""

from __future__ import annotations

# code -> (HTTP status, Kling-style message); from the error table of Kling's API reference.
KLING_ERRORS: dict[int, tuple[int, str]] = {
    1000: (401, "Authentication failed"),
    1001: (401, "Authorization is empty"),
    1002: (401, "Authorization is invalid"),
    1003: (401, "Authorization is not yet valid"),
    1004: (401, "Authorization has expired"),
    1100: (429, "Account exception"),
    1101: (429, "Account in arrears (overdue payment)"),
    1102: (429, "Resource pack has been used up or has expired"),
    1103: (403, "Unauthorized access to the requested resource, such as API or model"),
    1200: (400, "Invalid request"),
    1201: (400, "Invalid parameter"),
    1202: (404, "Invalid request method"),
    1203: (404, "Requested resource does not exist"),
    1300: (400, "Trigger the platform's policy"),
    1301: (400, "Failure to pass the risk control system: the content security policy was triggered"),
    1302: (429, "The API request is too fast, please slow down the request frequency"),
    1303: (429, "Parallel task over resource pack limit"),
    1304: (429, "Trigger the IP whitelisting policy"),
    5000: (500, "Server internal error"),
    5001: (503, "Server temporarily unavailable, usually due to maintenance"),
    5002: (504, "Server internal timeout, usually due to a backlog"),
}


class SimApiError(Exception):
    """An answer with a non-zero Kling code; the server turns it into `{code, message, request_id}`."""

    def __init__(self, code: int, message: str | None = None, http_status: int | None = None) -> None:
        default_status, default_message = KLING_ERRORS.get(code, (500, "Server internal error"))
        self.code = code
        self.message = message or default_message
        self.http_status = http_status or default_status
        super().__init__(f"{self.code}: {self.message}")


def invalid(message: str) -> SimApiError:
    """1201: a parameter is wrong; the message names it."""
    return SimApiError(1201, message)


def bad_request(message: str) -> SimApiError:
    """1200: the request as a whole is unusable (body, content type)."""
    return SimApiError(1200, message)
