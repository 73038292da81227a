"""The ``small`` section: many small files, where a push's cost is round trips, not bytes.

``small_files`` objects of 4 KiB under a prefix, pushed with ``push_artifact`` (as the operator
does, its default concurrency) to moto's strict ECR: a first push into a new repository, then the
same files again under a new first tag (no layers recorded under that tag to reuse, so each file's
digest has to be learnt from its bytes). Its fields: ``small_files_per_s`` (files per second of the
first push), ``small_new_tag_per_s`` (of the push under a new tag) and ``small_new_tag_sent_ratio``
(bytes sent by that push over the first push's: 0 when nothing ECR holds is uploaded again).
"""

from __future__ import annotations

from bench_common import (
    BUCKET,
    MOTO_ECR_CONN_ID,
    KiB,
    Push,
    Sizes,
    Summary,
    boto_client,
    median_run,
    push_objects,
    seeding_s3,
)
from bench_processes import CpuMeter, Servers

SMALL_SIZE = 4 * KiB
SMALL_PREFIX = "small/"


def measure(sizes: Sizes, moto_url: str, moto_pid: int) -> list[tuple[Push, CpuMeter]]:
    """``repeats`` times: a first push of the small files into a new repository, then the same
    files under a new first tag; the median run of each, with the cores it kept busy."""
    s3 = seeding_s3(moto_url)
    for index in range(sizes.small_files):
        body = f"small file {index}\n".encode().ljust(SMALL_SIZE, b".")
        s3.put_object(Bucket=BUCKET, Key=f"{SMALL_PREFIX}file-{index:04d}.txt", Body=body)
    url = f"s3://{BUCKET}/{SMALL_PREFIX}"
    ecr = boto_client("ecr", moto_url)
    first: list[tuple[Push, CpuMeter]] = []
    new_tag: list[tuple[Push, CpuMeter]] = []
    for run in range(sizes.repeats):
        repository = f"bench/small-{run}"
        ecr.create_repository(repositoryName=repository)
        for label, tag, runs in (("first push", "v1", first), ("again, a new tag", "v2", new_tag)):
            with CpuMeter(moto=moto_pid) as meter:
                push = push_objects(label, MOTO_ECR_CONN_ID, url, repository, [tag])
            runs.append((push, meter))
    return [median_run(runs, key=lambda run: run[0].seconds) for runs in (first, new_tag)]


def run(sizes: Sizes, keys: dict[int, str], servers: Servers) -> Summary:
    (first, _), (new_tag, _) = pushes = measure(sizes, servers.moto.url, servers.moto.pid)
    count = sizes.small_files
    print(
        f"\n{count} objects of {SMALL_SIZE // KiB} KiB under a prefix, push_artifact to moto's strict ECR "
        f"(median of {sizes.repeats})"
    )
    print(f"{'push':<24} {'s':>7} {'files/s':>8} {'skipped':>8} {'KiB sent':>9}   cores busy")
    for push, meter in pushes:
        t = push.totals
        print(
            f"{push.label:<24} {push.seconds:>7.2f} {count / push.seconds:>8.1f} {t['skipped']:>8} "
            f"{t['bytes_sent'] / KiB:>9.1f}   {meter}"
        )
    sent_ratio = new_tag.totals["bytes_sent"] / max(first.totals["bytes_sent"], 1)
    return Summary(
        (
            f"small_files_per_s={count / first.seconds:.1f}",
            f"small_new_tag_per_s={count / new_tag.seconds:.1f}",
            f"small_new_tag_sent_ratio={sent_ratio:.3f}",
        )
    )


def reads(sizes: Sizes) -> tuple[int, ...]:
    return ()  # puts its own objects
