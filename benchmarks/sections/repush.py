"""The ``repush`` section: re-pushing what changed, and one file as one layer or as four chunks.

Eight objects under a prefix pushed with ``push_artifact`` to moto's strict ECR, again unchanged,
and again with one object overwritten (bytes read and sent as the engine counts them); then one
file to the sink that holds each answer, as one layer and with ``chunk_size`` a quarter of it.
Its line: ``repush: unchanged_read_ratio=... unchanged_sent_ratio=... one_changed_read_ratio=...
one_changed_sent_ratio=... chunked_speedup=...`` (one layer's time over the four chunks').
"""

from __future__ import annotations

from bench_common import (
    BUCKET,
    MOTO_ECR_CONN_ID,
    PART_DELAY_MS,
    REPOSITORY,
    SLOW_SINK_CONN_ID,
    MiB,
    Push,
    Sizes,
    Summary,
    boto_client,
    median_run,
    mib_per_s,
    push_objects,
    seed,
    seeding_s3,
)
from bench_processes import Servers

REPUSH_OBJECTS = 8
REPUSH_PREFIX = "repush/"
REPUSH_REPOSITORY = "bench/repush"


def measure_repush(sizes: Sizes, moto_url: str) -> list[Push]:
    """Eight objects under a prefix to moto's strict ECR: pushed, pushed again unchanged, then
    again after one object is overwritten with new bytes of the same size."""
    s3 = seeding_s3(moto_url)
    boto_client("ecr", moto_url).create_repository(repositoryName=REPUSH_REPOSITORY)
    for index in range(REPUSH_OBJECTS):
        seed(s3, f"{REPUSH_PREFIX}object-{index}.bin", sizes.repush_object, salt=f"repush-{index}-")
    url = f"s3://{BUCKET}/{REPUSH_PREFIX}"
    first = push_objects("first push", MOTO_ECR_CONN_ID, url, REPUSH_REPOSITORY, ["latest"])
    unchanged = push_objects("again, unchanged", MOTO_ECR_CONN_ID, url, REPUSH_REPOSITORY, ["latest"])
    seed(s3, f"{REPUSH_PREFIX}object-3.bin", sizes.repush_object, salt="repush-changed-")
    one_changed = push_objects("again, 1 of 8 changed", MOTO_ECR_CONN_ID, url, REPUSH_REPOSITORY, ["latest"])
    return [first, unchanged, one_changed]


def measure_chunked(sizes: Sizes, moto_url: str) -> tuple[Push, Push]:
    """One file to the slow sink, as one layer and as four chunks, at ``max_concurrency`` 2;
    the two interleaved ``repeats`` times, medians."""
    url = seed(seeding_s3(moto_url), "chunked/model.bin", sizes.chunked_file, salt="chunked-")
    whole: list[Push] = []
    chunked: list[Push] = []
    for _ in range(sizes.repeats):
        whole.append(push_objects("one layer", SLOW_SINK_CONN_ID, url, REPOSITORY, []))
        chunked.append(
            push_objects("4 chunks", SLOW_SINK_CONN_ID, url, REPOSITORY, [], chunk_size=sizes.chunked_file // 4)
        )
    return median_run(whole, key=lambda p: p.seconds), median_run(chunked, key=lambda p: p.seconds)


def print_tables(sizes: Sizes, pushes: list[Push], chunks: tuple[Push, Push]) -> None:
    print(
        f"\n{REPUSH_OBJECTS} objects of {sizes.repush_object // MiB} MiB under a prefix, push_artifact to moto's "
        "strict ECR (bytes as the engine counts them: read from S3, sent in UploadLayerPart)"
    )
    print(f"{'push':<24} {'s':>7} {'reused':>7} {'skipped':>8} {'MiB read':>9} {'MiB sent':>9}")
    for push in pushes:
        t = push.totals
        print(
            f"{push.label:<24} {push.seconds:>7.2f} {t['reused']:>4}/{t['layers']:<2} {t['skipped']:>8} "
            f"{t['bytes_read'] / MiB:>9.1f} {t['bytes_sent'] / MiB:>9.1f}"
        )
    print(
        f"\none {sizes.chunked_file // MiB} MiB file to a sink that answers each part {PART_DELAY_MS} ms after "
        f"reading it, max_concurrency 2 (median of {sizes.repeats})"
    )
    print(f"{'layers':<24} {'s':>7} {'MiB/s':>8}")
    for push in chunks:
        print(f"{push.label:<24} {push.seconds:>7.2f} {mib_per_s(sizes.chunked_file, push.seconds):>8.1f}")


def repush_line(pushes: list[Push], chunks: tuple[Push, Push]) -> str:
    first, unchanged, changed = (p.totals for p in pushes)
    whole, chunked = chunks
    return (
        f"repush: unchanged_read_ratio={unchanged['bytes_read'] / first['bytes_read']:.3f} "
        f"unchanged_sent_ratio={unchanged['bytes_sent'] / first['bytes_sent']:.3f} "
        f"one_changed_read_ratio={changed['bytes_read'] / first['bytes_read']:.3f} "
        f"one_changed_sent_ratio={changed['bytes_sent'] / first['bytes_sent']:.3f} "
        f"chunked_speedup={whole.seconds / chunked.seconds:.2f}"
    )


def reads(sizes: Sizes) -> tuple[int, ...]:
    return ()  # seeds its own objects


def run(sizes: Sizes, keys: dict[int, str], servers: Servers) -> Summary:
    pushes = measure_repush(sizes, servers.moto.url)
    chunks = measure_chunked(sizes, servers.moto.url)
    print_tables(sizes, pushes, chunks)
    return Summary(line=repush_line(pushes, chunks))
