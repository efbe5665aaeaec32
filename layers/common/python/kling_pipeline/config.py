"""Settings read once per cold start from the function's environment into one typed object.

Logic never reads os.environ; it receives a Settings. Secrets are not here: only the names of the
Secrets Manager secrets that hold them (read through Powertools Parameters, cached).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConfigError(RuntimeError):
    """The function's environment is missing something it needs; names the variable to set."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    jobs_table_name: str = ""
    jobs_queue_url: str = ""
    dead_letter_queue_url: str = ""
    kling_base_url: str = "https://api-singapore.klingai.com"
    kling_credentials_secret: str = ""
    callback_secret: str = ""
    public_api_base_url: str = ""
    default_model: str = "kling-v2-6"
    known_models: tuple[str, ...] = (
        "kling-v1",
        "kling-v1-6",
        "kling-v2-master",
        "kling-v2-1-master",
        "kling-v2-5-turbo",
        "kling-v2-6",
        "kling-v3",
    )
    kling_timeout_s: float = Field(default=8.0, gt=0, le=60)
    submit_lease_s: int = Field(default=120, ge=0)
    backpressure_base_delay_s: float = Field(default=2.0, ge=0)
    backpressure_max_delay_s: int = Field(default=900, ge=0, le=900)
    finished_job_ttl_days: int = Field(default=90, ge=1)
    pipeline_mode: Literal["production", "local"] = "production"
    secrets_max_age_s: int = Field(default=300, ge=0)
    download_state_machine_arn: str = ""
    video_bucket: str = ""
    allowed_download_hosts: str = "*.klingai.com,*.kechuangai.com"
    max_video_bytes: int = Field(default=1024**3, ge=1024)

    @field_validator("known_models", mode="before")
    @classmethod
    def _split_models(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(m.strip() for m in value.split(",") if m.strip())
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values = {name: environ[name.upper()] for name in cls.model_fields if name.upper() in environ}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(f"{str(err['loc'][0]).upper()}: {err['msg']}" for err in exc.errors() if err["loc"])
            raise ConfigError(f"invalid function environment: {problems}") from exc

    def need(self, name: str) -> str:
        """A setting this function cannot work without; fails the cold start with the variable to set."""
        value = getattr(self, name)
        if not value:
            raise ConfigError(f"environment variable {name.upper()} is not set; the template sets it")
        return str(value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
