"""Kling JWT signing and the retryable/final classification of business codes."""

import jwt
import pytest

from kling_pipeline.adapters.kling_client import (
    TOKEN_LIFETIME_S,
    TOKEN_REFRESH_MARGIN_S,
    KlingTokenSigner,
    classify_error,
)
from kling_pipeline.errors import KlingAccountError, KlingFinalError, KlingRetryableError


def test_token_has_kling_claims_and_header() -> None:
    signer = KlingTokenSigner("ak-123", "sk-456")
    token = signer.token(now=1_700_000_000)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(token, "sk-456", algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False})
    assert claims == {"iss": "ak-123", "exp": 1_700_000_000 + 1800, "nbf": 1_700_000_000 - 5}


def test_token_is_cached_and_resigned_before_expiry() -> None:
    signer = KlingTokenSigner("ak", "sk")
    first = signer.token(now=1000.0)
    assert signer.token(now=1000.0 + 60) == first
    later = 1000.0 + TOKEN_LIFETIME_S - TOKEN_REFRESH_MARGIN_S + 1
    assert signer.token(now=later) != first


def test_empty_keys_are_refused_with_a_pointer() -> None:
    with pytest.raises(ValueError, match="KlingCredentials"):
        KlingTokenSigner("", "sk")


@pytest.mark.parametrize("code", [1302, 1303, 5000, 5001, 5002])
def test_retryable_codes(code: int) -> None:
    error = classify_error(code, "busy", 429)
    assert isinstance(error, KlingRetryableError)
    assert error.retryable


@pytest.mark.parametrize("code", [1103, 1200, 1201, 1202, 1203, 1300, 1301])
def test_final_codes(code: int) -> None:
    error = classify_error(code, "no", 403 if code == 1103 else 400)
    assert isinstance(error, KlingFinalError)
    assert not error.retryable
    assert str(code) in str(error)


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1004, 1100, 1101, 1102, 1304, 4242])
def test_account_problems_and_unknown_codes_are_nobodys_job_fault(code: int) -> None:
    # 1100-1102 (account exception, arrears, resource pack used up) come as HTTP 429, like throttling.
    error = classify_error(code, "refused", 429 if code in (1100, 1101, 1102) else 401)
    assert isinstance(error, KlingAccountError)
    assert not isinstance(error, KlingFinalError)
    assert not error.retryable
