"""Benchmarks that print figures (`make bench`); nothing here asserts timings.

1. download memory: the download function's streaming code copies simulated videos of 64 MiB and
   1 GiB from the Kling simulator into S3 (a moto server in another process); peak Python memory
   (tracemalloc) and peak RSS must stay flat as the video grows.
2. polling baseline vs pipeline: the seeds' worker (GET every active task every 10 s) against the
   same simulator, and this pipeline's demo batch: Kling calls per video and the delay between
   Kling's "succeed" and the moment the video is noticed / stored.
3. cold start: each function's handler imported in a fresh interpreter set up as Lambda's, against
   a bare `import boto3` (bench/cold_start.py).

Run one part: `python -m bench download|polling|pipeline|coldstart`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import boto3
import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def bench_download(sizes_mb: list[int]) -> list[dict[str, float]]:
    from kling_pipeline.adapters.kling_client import KlingClient
    from kling_pipeline.adapters.video_transfer import DownloadPolicy, stream_to_s3

    moto_port, sim_port = free_port(), free_port()
    env = os.environ | {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    moto = subprocess.Popen(
        [str(BIN / "moto_server"), "-p", str(moto_port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    sim = subprocess.Popen(
        [
            str(BIN / "kling-pipeline"),
            "sim",
            "--port",
            str(sim_port),
            "--access-key",
            "bench-ak",
            "--secret-key",
            "bench-secret-key-0123456789abcdef0123",
            "--speed",
            "10000",
            "--video-size-bytes",
            str(max(sizes_mb) * 1024 * 1024),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results = []
    try:
        wait_http(f"http://127.0.0.1:{moto_port}/")
        wait_http(f"http://127.0.0.1:{sim_port}/_sim/stats")
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{moto_port}",
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        s3.create_bucket(Bucket="bench")
        kling = KlingClient(f"http://127.0.0.1:{sim_port}", "bench-ak", "bench-secret-key-0123456789abcdef0123")
        policy = DownloadPolicy.from_setting(
            f"http://127.0.0.1:{sim_port + 1}", max_bytes=4 * 1024**3, production=False
        )
        for size_mb in sizes_mb:
            httpx.post(f"http://127.0.0.1:{sim_port}/_sim/config", json={"video_size_bytes": size_mb * 1024 * 1024})
            task = kling.create_task("text2video", {"prompt": f"bench {size_mb}", "model_name": "kling-v1"})
            while (task := kling.get_task("text2video", task.task_id)).task_status != "succeed":
                time.sleep(0.05)
            assert task.first_video is not None
            tracemalloc.start()
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started = time.monotonic()
            stored = stream_to_s3(
                task.first_video.url, bucket="bench", key=f"videos/{size_mb}.mp4", policy=policy, s3=s3, metadata={}
            )
            seconds = time.monotonic() - started
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            results.append(
                {
                    "video_mib": size_mb,
                    "stored_bytes": stored.size,
                    "seconds": round(seconds, 2),
                    "mib_per_s": round(stored.size / 1024**2 / seconds, 1),
                    "peak_python_mib": round(peak / 1024**2, 1),
                    "peak_rss_growth_mib": round((rss_after - rss_before) / 1024, 1),
                }
            )
            s3.delete_object(Bucket="bench", Key=f"videos/{size_mb}.mp4")
    finally:
        for process in (sim, moto):
            process.terminate()
            process.wait(timeout=10)
    return results


def bench_polling_baseline(jobs: int, speed: float) -> dict[str, float]:
    """The seeds' worker: submit, then GET every active task every 10 s (simulated) until it ends."""
    from kling_local.sim import KlingSimulator, SimConfig
    from kling_pipeline.adapters.kling_client import KlingClient

    config = SimConfig(
        access_key="poll-ak",
        secret_key="poll-secret-key-0123456789abcdef012345",
        speed=speed,
        concurrency_limit=jobs,
        seed=3,
    )
    with KlingSimulator(config) as sim:
        client = KlingClient(sim.base_url, config.access_key, config.secret_key)
        active = {
            client.create_task("text2video", {"prompt": f"p{i}", "model_name": "kling-v1"}).task_id for i in range(jobs)
        }
        noticed_delay = []
        gets = 0
        while active:
            time.sleep(10 / speed)  # the seed's time.sleep(10), in simulated seconds
            for task_id in list(active):
                task = client.get_task("text2video", task_id)
                gets += 1
                if task.task_status in ("succeed", "failed"):
                    active.discard(task_id)
                    assert task.updated_at is not None
                    noticed_delay.append((time.time() - task.updated_at / 1000) * speed)
        noticed_delay.sort()
    return {
        "jobs": jobs,
        "kling_gets_per_video": round(gets / jobs, 2),
        "kling_calls_per_video": round((gets + jobs) / jobs, 2),
        "notice_delay_p50_sim_s": round(noticed_delay[len(noticed_delay) // 2], 2),
        "notice_delay_max_sim_s": round(noticed_delay[-1], 2),
    }


def bench_pipeline(jobs: int, *, callback_loss: float = 0.0, speed: float = 10.0) -> dict[str, object]:
    """This pipeline's demo batch on the local stack. `speed` is the simulator's (and the pipeline's time
    scale): at 10, a 75 s generation takes 7.5 s and the poller runs every 6 s, while the local stack's
    own latency (a second or two per step on this machine) stays small beside them, as it is beside
    Kling's minutes on AWS. settle_*: Kling's "succeed" to the job noticed (DOWNLOADING); notice_*: to
    the video in S3 (which adds the local download's own time)."""
    out = subprocess.run(
        [
            str(BIN / "kling-pipeline"),
            "demo",
            "--json",
            "--count",
            str(jobs),
            "--seed",
            "3",
            "--speed",
            str(speed),
            "--callback-loss",
            str(callback_loss),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if not out.stdout.strip():
        raise RuntimeError(f"demo printed no summary: {out.stderr[-2000:]}")
    summary: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    figures = {
        k: summary[k]
        for k in (
            "jobs",
            "completed",
            "failed",
            "lost",
            "kling_creates",
            "kling_gets",
            "kling_gets_per_job",
            "kling_gets_max",
            "kling_calls_per_job",
            "settled_by",
            "notice_p50_s",
            "notice_p95_s",
            "settle_p50_s",
            "settle_p95_s",
            "duration_s",
        )
    }
    # Seconds of Kling's time: the demo's are compressed by `speed` like the simulator's.
    for key in ("notice_p50_s", "notice_p95_s", "settle_p50_s", "settle_p95_s"):
        value = summary.get(key)
        figures[key.replace("_s", "_kling_s")] = round(float(value) * speed, 1) if value is not None else None
    return {"callback_loss": callback_loss, "speed": speed} | figures


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parts = ["download", "polling", "pipeline", "coldstart", "all"]
    parser.add_argument("part", nargs="?", choices=parts, default="all")
    parser.add_argument("--sizes-mb", default="64,1024")
    parser.add_argument("--jobs", type=int, default=20)
    args = parser.parse_args()
    if args.part in ("download", "all"):
        print("== download memory (stream Kling CDN -> S3 multipart; flat means bounded by part size)")
        for row in bench_download([int(s) for s in args.sizes_mb.split(",")]):
            print(json.dumps(row))
    if args.part in ("polling", "all"):
        print("== the seeds' polling worker (every active task every 10 s), same simulator")
        print(json.dumps(bench_polling_baseline(args.jobs, speed=60.0)))
    if args.part in ("pipeline", "all"):
        print("== this pipeline on the local stack: Kling GETs per job with callbacks lost (poller period: 60 s of")
        print("   Kling's time), and the time from Kling's 'succeed' to the video in S3")
        for loss in (0.0, 0.3, 1.0):
            print(json.dumps(bench_pipeline(args.jobs, callback_loss=loss)))
    if args.part in ("coldstart", "all"):
        from bench.cold_start import TARGET_RATIO, bench_cold_start

        print(f"== cold start: handler import vs bare `import boto3`, CPU seconds (target <= {TARGET_RATIO}x)")
        for cold in bench_cold_start():
            print(json.dumps(cold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
