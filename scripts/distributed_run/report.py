"""What the run found, printed and checked: the mapped uploads' timeline (task start/end from the
metadata DB, byte transfers from the task logs) and how many overlapped, which Celery worker ran
each and whether the spread barrier let each through, the image read back from ECR, and the
figures of the last line."""

from __future__ import annotations

import collections
import glob
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from distributed_run.constants import CELERY_WORKERS, DAG_ID, REPOSITORY, UPLOAD_TASK
from distributed_run.progress import section
from distributed_run.servers import Postgres, Source
from distributed_run.spread_barrier import PASSED


@dataclass
class Interval:
    """One mapped upload's task instance: when it ran (start/end) and where (host, pid)."""

    map_index: int
    state: str
    start: datetime
    end: datetime
    hostname: str
    pid: int | None


@dataclass
class UploadReport:
    """What the upload checks found: failures, the most uploads running at once, and (on
    Celery) the uploads per worker."""

    failures: list[str] = field(default_factory=list)
    overlap: int = 0
    per_worker: dict[str, int] = field(default_factory=dict)


@dataclass
class Throttling:
    """With ``--throttle``: ECR calls answered ThrottlingException out of all, the hook's own
    retries (after botocore's) and task retries."""

    throttled: int
    calls: int
    our_retries: int
    task_retries: int


def upload_intervals(pg: Postgres, run_id: str) -> list[Interval]:
    """The finished mapped uploads of ``run_id``, from the metadata DB, by map index."""
    rows = pg.query(
        "SELECT map_index, state, start_date, end_date, hostname, pid FROM task_instance "
        "WHERE dag_id = %s AND run_id = %s AND task_id = %s ORDER BY map_index",
        (DAG_ID, run_id, UPLOAD_TASK),
    )
    return [
        Interval(m, s or "none", start, end, host or "", pid)
        for m, s, start, end, host, pid in rows
        if start is not None and end is not None
    ]


def upload_log_events(home: Path, run_id: str, map_index: int) -> list[tuple[str, datetime]]:
    """(event, timestamp) of each record in the log of one mapped upload's last attempt."""
    folder = home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={UPLOAD_TASK}"
    logs = sorted(glob.glob(str(folder / f"map_index={map_index}" / "attempt=*.log")))
    if not logs:
        return []
    events = []
    for line in Path(logs[-1]).read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("timestamp"):
            events.append((str(record.get("event", "")), datetime.fromisoformat(record["timestamp"])))
    return events


def transfer_window(home: Path, run_id: str, map_index: int) -> tuple[datetime, datetime] | None:
    """From the task log: when the first part was about to be sent ("Uploading ...") and
    when the last one was acknowledged ("Uploaded ..."); None if the log says otherwise."""
    started = finished = None
    for event, stamp in upload_log_events(home, run_id, map_index):
        if event.startswith("Uploading ") and started is None:
            started = stamp
        elif event.startswith("Uploaded "):
            finished = stamp
    return (started, finished) if started and finished else None


def barrier_report(home: Path, run_id: str, map_indexes: Sequence[int]) -> tuple[str, str | None]:
    """Whether the spread barrier let every upload through, from their task logs: a line to
    print, and a failure naming the uploads it did not (None if it let all through)."""
    passed = [
        m for m in map_indexes if any(event.startswith(PASSED) for event, _ in upload_log_events(home, run_id, m))
    ]
    missing = sorted(set(map_indexes) - set(passed))
    line = f"spread barrier: used; it let through {len(passed)} of {len(map_indexes)} uploads"
    if not missing:
        return line + f" (each task log says {PASSED!r})", None
    return line, f"the spread barrier did not let through uploads {missing} (see their task logs)"


def retries_in_logs(home: Path, run_ids: Sequence[str]) -> int:
    """Our own retries (after botocore's), as the task logs of ``run_ids`` report them."""
    found = 0
    for path in (home / "logs").rglob("*.log"):
        if any(f"run_id={run_id}" in str(path) for run_id in run_ids):
            found += sum(1 for line in path.read_text(errors="replace").splitlines() if "failed (Throttled" in line)
    return found


def uploads_per_worker(intervals: Sequence[Interval]) -> tuple[dict[str, int], str | None]:
    """Uploads per Celery worker (by the task instances' ``hostname``), and what is wrong
    with the spread, if anything: an upload on no known worker, or a worker with none."""
    counts = collections.Counter(i.hostname.split("@", 1)[0] for i in intervals)
    per_worker = {name: counts.pop(name, 0) for name in CELERY_WORKERS}
    if counts:
        return per_worker, f"uploads ran on hosts that are not this run's Celery workers: {dict(counts)}"
    idle = [name for name, n in per_worker.items() if n == 0]
    if idle:
        ran = ", ".join(f"{name} {n}" for name, n in per_worker.items())
        return per_worker, f"not every Celery worker ran uploads ({ran}): {', '.join(idle)} ran none"
    return per_worker, None


def max_overlap(windows: Sequence[tuple[datetime, datetime]]) -> int:
    """The largest number of windows open at one instant (an end before a start at a tie)."""
    events = sorted(
        [(start, 1) for start, _ in windows] + [(end, -1) for _, end in windows], key=lambda event: (event[0], event[1])
    )
    current = best = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


def print_timeline(
    intervals: Sequence[Interval], transfers: dict[int, tuple[datetime, datetime] | None], sources: Sequence[Source]
) -> None:
    origin = min(i.start for i in intervals)
    horizon = max(i.end for i in intervals)
    span = max((horizon - origin).total_seconds(), 1e-6)
    width = 40
    print(
        f"{'map':>3}  {'source':<28} {'state':<8} {'start':>7} {'end':>7} {'dur':>6}  "
        f"{'transfer':>15}  timeline (0 .. {span:.1f}s; '=' task running, '#' bytes moving)"
    )
    for item in intervals:
        start = (item.start - origin).total_seconds()
        end = (item.end - origin).total_seconds()
        bar = [" "] * width
        for col in range(int(start / span * width), max(int(end / span * width), int(start / span * width) + 1)):
            bar[min(col, width - 1)] = "="
        transfer = transfers.get(item.map_index)
        transfer_text = "-"
        if transfer:
            t0, t1 = ((t - origin).total_seconds() for t in transfer)
            transfer_text = f"{t0:6.2f}-{t1:6.2f}s"
            for col in range(int(t0 / span * width), max(int(t1 / span * width), int(t0 / span * width) + 1)):
                bar[min(col, width - 1)] = "#"
        source = sources[item.map_index].key if item.map_index < len(sources) else "?"
        print(
            f"{item.map_index:>3}  {source:<28} {item.state:<8} {start:6.2f}s {end:6.2f}s "
            f"{end - start:5.2f}s  {transfer_text:>15}  |{''.join(bar)}|"
        )
    hosts = sorted({f"{i.hostname}/pid {i.pid}" for i in intervals})
    print(f"task processes: {', '.join(hosts)}")


def read_back(ecr: Any, tag: str) -> dict[str, Any]:
    """The image under ``tag``: digests from the manifest bytes ECR returns, sizes from ECR."""
    image = ecr.batch_get_image(
        repositoryName=REPOSITORY,
        imageIds=[{"imageTag": tag}],
        acceptedMediaTypes=["application/vnd.oci.image.manifest.v1+json"],
    )["images"][0]
    manifest_bytes = image["imageManifest"].encode("utf-8")
    manifest = json.loads(manifest_bytes)
    digests = [layer["digest"] for layer in manifest["layers"]]
    found = ecr.batch_check_layer_availability(repositoryName=REPOSITORY, layerDigests=digests)["layers"]
    stored = {layer["layerDigest"]: layer.get("layerSize") for layer in found}
    return {
        "repository": REPOSITORY,
        "registry_id": image["registryId"],
        "tag": tag,
        "image_digest": image["imageId"]["imageDigest"],
        "manifest_sha256": "sha256:" + hashlib.sha256(manifest_bytes).hexdigest(),
        "manifest_media_type": manifest.get("mediaType"),
        "artifact_type": manifest.get("artifactType"),
        "layers": [
            {
                "title": layer.get("annotations", {}).get("org.opencontainers.image.title"),
                "digest": layer["digest"],
                "size_in_manifest": layer["size"],
                "size_in_ecr": stored.get(layer["digest"]),
            }
            for layer in manifest["layers"]
        ],
    }


def check_image(pushed: dict[str, Any], sources: Sequence[Source]) -> dict[str, bool]:
    by_title = {Path(s.key).name: s for s in sources}
    checks = {
        "image digest == sha256 of the stored manifest": pushed["image_digest"] == pushed["manifest_sha256"],
        f"manifest has {len(sources)} layers, one per source": len(pushed["layers"]) == len(sources)
        and {layer["title"] for layer in pushed["layers"]} == set(by_title),
    }
    for layer in pushed["layers"]:
        source = by_title.get(layer["title"])
        checks[f"layer {layer['title']}: digest == sha256 of {source.url if source else '?'}"] = (
            source is not None and layer["digest"] == source.digest
        )
        checks[f"layer {layer['title']}: stored size == source size"] = (
            source is not None and layer["size_in_ecr"] == layer["size_in_manifest"] == source.size
        )
    return checks


def check_uploads(pg: Postgres, home: Path, run_id: str, sources: Sequence[Source], celery: bool) -> UploadReport:
    """Print the mapped uploads' timeline and overlap (and on Celery, the uploads per worker
    and the spread barrier's part); what is wrong goes to the report's failures."""
    section(f"Mapped {UPLOAD_TASK}: task instances from the metadata DB")
    intervals = upload_intervals(pg, run_id)
    report = UploadReport()
    if len(intervals) != len(sources):
        report.failures.append(f"{len(intervals)} finished {UPLOAD_TASK} task instances, expected {len(sources)}")
    if intervals:
        transfers = {i.map_index: transfer_window(home, run_id, i.map_index) for i in intervals}
        print_timeline(intervals, transfers, sources)
        report.overlap = max_overlap([(i.start, i.end) for i in intervals])
        moving = [w for w in transfers.values() if w]
        print(f"max concurrency observed (task start_date..end_date): {report.overlap}")
        if len(moving) == len(intervals):
            print(f"max concurrency of byte transfers (task logs):      {max_overlap(moving)}")
        print(f"uploads overlapped in time: {'yes' if report.overlap > 1 else 'NO'}")
        if report.overlap <= 1:
            report.failures.append("mapped uploads did not overlap in time")
    if celery:
        report.per_worker, spread_failure = uploads_per_worker(intervals)
        print("uploads per Celery worker: " + ", ".join(f"{name} {n}" for name, n in report.per_worker.items()))
        barrier_line, barrier_failure = barrier_report(home, run_id, [i.map_index for i in intervals])
        print(barrier_line)
        report.failures += [failure for failure in (spread_failure, barrier_failure) if failure]
    return report


def check_pushed_image(ecr: Any, tag: str, sources: Sequence[Source]) -> list[str]:
    """Print the image under ``tag`` as ECR returns it and each check on it; the failed checks."""
    section("Image read back from ECR (BatchGetImage)")
    pushed = read_back(ecr, tag)
    print(json.dumps(pushed, indent=2))
    failures = []
    for what, ok in check_image(pushed, sources).items():
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            failures.append(what)
    return failures


def last_line_figures(
    uploads: UploadReport,
    tasks: int,
    celery: bool,
    same_tag_winner: str | None = None,
    throttling: Throttling | None = None,
) -> str:
    """The figures in ``distributed run: ok (...)``; the system tests parse them.

    ``tasks``: the mapped upload task instances; ``same_tag_winner``: the run whose digest
    the tag holds after ``--same-tag`` (its run id ends ``__1`` or ``__2``)."""
    same_tag = (
        f"same-tag runs: both ok, tag on {same_tag_winner.rsplit('__', 1)[1]}'s digest" if same_tag_winner else ""
    )
    if celery:
        spread = "/".join(str(n) for n in uploads.per_worker.values())
        figures = (
            f"executor=CeleryExecutor, workers={len(CELERY_WORKERS)}, uploads per worker={spread}, "
            f"max overlapping uploads={uploads.overlap}"
        )
    else:
        figures = f"max overlapping uploads = {uploads.overlap}; tasks={tasks}"
    figures += f"; {same_tag}" if same_tag else ""
    if throttling is not None:
        figures += (
            f", throttled={throttling.throttled} of {throttling.calls} ECR calls, "
            f"our retries={throttling.our_retries}, task retries={throttling.task_retries}"
        )
    return figures
