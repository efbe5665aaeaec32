"""One video download, three ways, each in a fresh interpreter so its peak memory is its own.

- `pipeline`: the download function's code (`video_transfer.stream_to_s3`: checked, streamed in 8 MiB
  multipart parts, hashed on the way);
- `naive`: the naive worker's `requests.get(url).content` (here httpx, the same whole-body read), then one
  `put_object` of it;
- `raw`: a bare stream copy of the body to nowhere (the ceiling: what the CDN and the machine give).

`python -m bench.download METHOD URL S3_ENDPOINT BUCKET` prints one JSON line: seconds, MiB/s, peak RSS
(the process's high-water mark minus its size before the download). No tracemalloc: it would slow
the streamed copies' many small allocations and not the naive one's single large one.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def measure(method: str, url: str, endpoint: str, bucket: str) -> dict[str, float | str]:
    import boto3
    import httpx

    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench"
    )
    policy = None
    if method == "pipeline":
        from kling_pipeline.adapters.video_transfer import DownloadPolicy, stream_to_s3

        origin = url.split("/bs2/", 1)[0]
        policy = DownloadPolicy.from_setting(origin, max_bytes=4 * 1024**3, production=False)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    size = 0
    if method == "pipeline":
        assert policy is not None
        stored = stream_to_s3(url, bucket=bucket, key="bench/pipeline.mp4", policy=policy, s3=s3, metadata={})
        size = stored.size
    elif method == "naive":
        body = httpx.get(url, timeout=600).content
        s3.put_object(Bucket=bucket, Key="bench/naive.mp4", Body=body)
        size = len(body)
        del body
    else:
        with httpx.stream("GET", url, timeout=600) as response:
            for chunk in response.iter_raw(1 << 20):
                size += len(chunk)
    seconds = time.monotonic() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "method": method,
        "bytes": size,
        "seconds": round(seconds, 2),
        "mib_per_s": round(size / 1024**2 / seconds, 1),
        "peak_rss_growth_mib": round((rss_after - rss_before) / 1024, 1),
        "peak_rss_mib": round(rss_after / 1024, 1),
        "rss_before_mib": round(rss_before / 1024, 1),
    }


if __name__ == "__main__":
    print(json.dumps(measure(*sys.argv[1:5])))
