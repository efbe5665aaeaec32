"""The streaming transfer's read-ahead cap relies on a setting of s3transfer that boto3 does not expose."""

from __future__ import annotations

import inspect

from s3transfer.manager import TransferConfig as S3TransferConfig

from kling_pipeline.adapters.video_transfer import PART_SIZE, transfer_config


def test_s3transfer_still_takes_the_read_ahead_cap() -> None:
    # If s3transfer drops or renames it, setting it on boto3's TransferConfig would silently do nothing
    # and a 1 GB download would buffer ten 8 MiB parts instead of three (the pin in requirements.txt).
    assert "max_in_memory_upload_chunks" in inspect.signature(S3TransferConfig).parameters


def test_the_transfer_reads_at_most_three_parts_ahead() -> None:
    config = transfer_config()
    assert config.max_in_memory_upload_chunks == 3
    assert config.multipart_chunksize == PART_SIZE
