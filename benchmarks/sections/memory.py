"""The ``rss`` section: peak RSS growth of ours for a small and a large artifact, each in a fresh process.

Each child warms up on a 1 MiB object, then uploads the artifact to the sink while
:class:`~bench_processes.RssSampler` watches. ``rss_growth_parts``: the large run's peak RSS growth
over the part size; ``rss_2g_vs_256m``: the large run's peak RSS over the small run's (the table
also shows the ratio of the growths, which leaves out the ~170 MiB Airflow brings).
"""

from __future__ import annotations

from bench_common import PART_SIZE, SINK_CONN_ID, WARMUP_SIZE, MiB, Sizes, Summary, ecr_hook, mib_per_s, ours
from bench_processes import RssSampler, Servers, run_child


def child(url: str, warmup_url: str) -> dict[str, float]:
    """In a fresh process: warm up on a tiny object, then upload ``url`` to the sink
    while sampling RSS. Printed as JSON for the parent."""
    hook = ecr_hook(SINK_CONN_ID, fast_upload=True)
    ours(hook, warmup_url)  # imports, connections, botocore's model cache, s3fs's session
    with RssSampler() as sampler:
        seconds = ours(hook, url)
    return sampler.figures(seconds)


def measure(url: str, warmup_url: str) -> dict[str, float]:
    """:func:`child` in a fresh interpreter (same environment)."""
    return run_child(f"the RSS run of {url}", "--rss-child", url, warmup_url)


def print_table(sizes: Sizes, small: dict[str, float], large: dict[str, float]) -> None:
    print("\npeak RSS of ours to the sink, fresh process each (growth over the warmed-up baseline)")
    print(f"{'artifact MiB':>12} {'baseline MiB':>13} {'peak MiB':>9} {'growth MiB':>11} {'parts':>6} {'MiB/s':>7}")
    for size, found in ((sizes.rss_small, small), (sizes.rss_large, large)):
        print(
            f"{size // MiB:>12} {found['baseline'] / MiB:>13.1f} {found['peak'] / MiB:>9.1f} "
            f"{found['growth'] / MiB:>11.1f} {found['growth'] / PART_SIZE:>6.2f} "
            f"{mib_per_s(size, found['seconds']):>7.1f}"
        )
    print(
        f"peak RSS ratio, large/small: {large['peak'] / small['peak']:.2f} "
        f"(growth ratio {large['growth'] / small['growth']:.2f})"
    )


def reads(sizes: Sizes) -> tuple[int, ...]:
    return (sizes.rss_small, sizes.rss_large)


def run(sizes: Sizes, keys: dict[int, str], servers: Servers) -> Summary:
    small = measure(keys[sizes.rss_small], keys[WARMUP_SIZE])
    large = measure(keys[sizes.rss_large], keys[WARMUP_SIZE])
    print_table(sizes, small, large)
    return Summary(
        (
            f"rss_growth_parts={large['growth'] / PART_SIZE:.1f}",
            f"rss_2g_vs_256m={large['peak'] / small['peak']:.2f}",
        )
    )
