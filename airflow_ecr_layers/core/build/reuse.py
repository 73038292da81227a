"""Push a build's tar layers, reusing those the last build's record names, unread and unsent.

Each tar layer's identity token (its files' identities summed up, keyed by registry, region
and repository: :meth:`~.tar_stream.TarLayer.identity`) is looked up in the build record of
the image the build replaces (:mod:`.records`). A layer found there with the same media type
and size is checked in ECR with the others in one batched ``BatchCheckLayerAvailability``
(:func:`~airflow_ecr_layers.core.push.discovery.learn_digests`, as a re-push does): held,
it is neither read nor sent, and its ``diff_id`` comes from the record; missing, it is
built in full. With ``verify_reuse`` its files are read and hashed, and the record used only
when they hash to it. A changed file changes its layer's token: that layer is read and sent,
the others reused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from airflow_ecr_layers.core.build.records import RecordedTarLayer
from airflow_ecr_layers.core.engine.results import BlobResult
from airflow_ecr_layers.core.engine.resume import ResumeStore
from airflow_ecr_layers.core.engine.transfer import EcrTransfer
from airflow_ecr_layers.core.limits import DEFAULT_MAX_CONCURRENCY
from airflow_ecr_layers.core.oci.layers import LayerSpec
from airflow_ecr_layers.core.push.artifact import push_found
from airflow_ecr_layers.core.push.discovery import learn_digests
from airflow_ecr_layers.core.sources.identity import RecordedLayer, Target


@dataclass(frozen=True)
class PushedTarLayer:
    """A tar layer in the repository: its blob, its identity token, and its ``diff_id`` when the
    record gave it (a reused layer); None for a layer sent now (its bytes give it)."""

    blob: BlobResult
    token: str | None
    recorded_diff_id: str | None


def layer_token(spec: LayerSpec, target: Target) -> str | None:
    """The identity token of a layer in ``target`` (None when its files have no identity)."""
    return spec.identity.token(target, spec.offset, spec.source.size) if spec.identity else None


def push_tar_layers(
    engine: EcrTransfer,
    repository_name: str,
    specs: Sequence[LayerSpec],
    *,
    registry_id: str,
    recorded: Mapping[str, RecordedTarLayer],
    verify_reuse: bool = False,
    part_size: int | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    resume: ResumeStore | None = None,
) -> list[PushedTarLayer]:
    """Push ``specs`` (tar layers with their identities), reusing what ``recorded`` names; in order."""
    target = Target(registry_id, engine.calls.region, repository_name)
    tokens = [layer_token(spec, target) for spec in specs]
    usable = {
        token: found
        for spec, token in zip(specs, tokens, strict=True)
        if token is not None and (found := recorded.get(token)) is not None and found.media_type == spec.media_type
    }
    findings = learn_digests(
        engine.calls,
        repository_name,
        registry_id,
        specs,
        recorded={token: RecordedLayer(found.digest, found.size) for token, found in usable.items()},
        verify_reuse=verify_reuse,
    )
    blobs = push_found(
        engine,
        repository_name,
        specs,
        findings,
        registry_id=registry_id,
        part_size=part_size,
        max_concurrency=max_concurrency,
        resume=resume,
    )
    return [
        PushedTarLayer(
            blob,
            token,
            usable[token].diff_id if token is not None and found.present and found.origin == "recorded" else None,
        )
        for blob, token, found in zip(blobs, tokens, findings, strict=True)
    ]
