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
from bench_processes import Servers

SMALL_SIZE = 4 * KiB
SMALL_PREFIX = "small/"


def measure(sizes: Sizes, moto_url: str) -> tuple[Push, Push]:
    """``repeats`` times: a first push of the small files into a new repository, then the same
    files under a new first tag; the median run of each."""
    s3 = seeding_s3(moto_url)
    for index in range(sizes.small_files):
        body = f"small file {index}\n".encode().ljust(SMALL_SIZE, b".")
        s3.put_object(Bucket=BUCKET, Key=f"{SMALL_PREFIX}file-{index:04d}.txt", Body=body)
    url = f"s3://{BUCKET}/{SMALL_PREFIX}"
    ecr = boto_client("ecr", moto_url)
    first: list[Push] = []
    new_tag: list[Push] = []
    for run in range(sizes.repeats):
        repository = f"bench/small-{run}"
        ecr.create_repository(repositoryName=repository)
        first.append(push_objects("first push", MOTO_ECR_CONN_ID, url, repository, ["v1"]))
        new_tag.append(push_objects("again, a new tag", MOTO_ECR_CONN_ID, url, repository, ["v2"]))
    return median_run(first, key=lambda p: p.seconds), median_run(new_tag, key=lambda p: p.seconds)


def run(sizes: Sizes, keys: dict[int, str], servers: Servers) -> Summary:
    first, new_tag = measure(sizes, servers.moto.url)
    count = sizes.small_files
    print(
        f"\n{count} objects of {SMALL_SIZE // KiB} KiB under a prefix, push_artifact to moto's strict ECR "
        f"(median of {sizes.repeats})"
    )
    print(f"{'push':<24} {'s':>7} {'files/s':>8} {'skipped':>8} {'KiB sent':>9}")
    for push in (first, new_tag):
        t = push.totals
        print(
            f"{push.label:<24} {push.seconds:>7.2f} {count / push.seconds:>8.1f} {t['skipped']:>8} "
            f"{t['bytes_sent'] / KiB:>9.1f}"
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
