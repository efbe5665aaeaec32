"""The jobs API from the CLI: requests signed with SigV4 (service execute-api) against AWS, unsigned
against the local stack, whose API server does not enforce IAM."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode, urlsplit

import boto3
import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


class ApiClientError(RuntimeError):
    """The API answered with an error, or could not be reached: the message is the API's own."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def region_of(url: str) -> str | None:
    match = EXECUTE_API_HOST.match(urlsplit(url).hostname or "")
    return match.group(1) if match else None


class JobsApiClient:
    def __init__(
        self,
        base_url: str,
        *,
        region: str | None = None,
        sign: bool | None = None,
        credentials: Any = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        host = urlsplit(self.base_url).hostname or ""
        self.sign = host not in LOCAL_HOSTS if sign is None else sign
        self.region = region or region_of(self.base_url) or boto3.session.Session().region_name or "us-east-1"
        self._credentials = credentials
        self._http = http or httpx.Client(timeout=35.0)

    def signed_headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        """SigV4 headers for one request (execute-api), from the default credential chain."""
        credentials = self._credentials or boto3.session.Session().get_credentials()
        if credentials is None:
            raise ApiClientError("AWS credentials not found: set AWS_PROFILE or AWS_ACCESS_KEY_ID and friends")
        request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
        SigV4Auth(credentials.get_frozen_credentials(), "execute-api", self.region).add_auth(request)
        return dict(request.headers.items())

    def call(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        """The API's JSON answer; ApiClientError with the API's error message for anything but 2xx."""
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        data = json.dumps(body).encode() if body is not None else b""
        headers = self.signed_headers(method, url, data) if self.sign else {"Content-Type": "application/json"}
        try:
            response = self._http.request(method, url, content=data or None, headers=headers)
        except httpx.HTTPError as exc:
            raise ApiClientError(f"cannot reach the jobs API at {self.base_url}: {exc}") from exc
        try:
            answer = response.json()
        except ValueError:
            answer = {"message": response.text[:300]}
        if response.status_code >= 300:
            error = answer.get("error") if isinstance(answer, dict) else None
            message = (
                error.get("message")
                if isinstance(error, dict)
                else (answer.get("message") if isinstance(answer, dict) else None)
            )
            raise ApiClientError(
                f"{response.status_code}: {message or response.text[:300]}", response.status_code, answer
            )
        return answer
