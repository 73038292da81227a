"""``airflow-ecr-layers``: the same pushes as the operators, from a shell.

    airflow-ecr-layers push SOURCE... REPOSITORY[:TAG] [--tag T] [--artifact-type T] [--annotation k=v]
        [--chunk-size BYTES] [--hash-first] [--no-reuse] [--reuse-from TAG|DIGEST] [--verify-reuse]
        [--record-source]
    airflow-ecr-layers build SOURCE... REPOSITORY[:TAG] [--path /models] [--tag T] [--platform OS/ARCH]...
        [--base REF] [--base-conn-id C] [--annotation k=v] [--label k=v] [--executable GLOB]
        [--no-reuse] [--reuse-from TAG|DIGEST] [--verify-reuse]
    airflow-ecr-layers push-archive SOURCE REPOSITORY[:TAG] [--tag T] [--image-ref REF]
    airflow-ecr-layers pull REPOSITORY[:TAG|@DIGEST] DEST_URL [--include GLOB]
    airflow-ecr-layers copy SOURCE DEST [--tag T] [--include-referrers] [--source-conn-id C]
    airflow-ecr-layers plan SOURCE [--part-size N]
    airflow-ecr-layers sign REPOSITORY[:TAG|@DIGEST] --key awskms:///alias/NAME [--annotation k=v] [--recursive]
        [--referrers]
    airflow-ecr-layers verify REPOSITORY[:TAG|@DIGEST] --key KEY [--require NAME[=VALUE]] [--accept-reference REPO]

A SOURCE of push or build is a URL, a prefix ending in ``/`` (every object under it) or a glob
(``*``, ``**``).

Credentials: ``--conn-id`` uses an Airflow connection (for ECR and for the sources); without
it, the plain AWS environment and credentials chain (``AWS_PROFILE``, ``AWS_ENDPOINT_URL``,
...), sources are read with fsspec and s3fs directly, and Airflow is never imported.
Results are printed as JSON on stdout; errors as one line on stderr. Exit codes: 0 done;
2 bad input, found before anything was written; 3 a failure a new try may get past (a
transfer that failed, a source that changed while read, throttling, an upload that gave up
after its retries); 1 anything else (ECR refused, a digest that does not match, ...). On a terminal, push and
push-archive draw progress bars on stderr (``--no-progress``: none); otherwise nothing
but errors is printed on stderr unless ``-v`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from airflow_ecr_layers.core.errors import RETRYABLE, EcrLayersError, InvalidInputError
from airflow_ecr_layers.core.limits import DEFAULT_MAX_CONCURRENCY

if TYPE_CHECKING:  # each sub-command imports what it needs, when it runs: start-up stays short
    from airflow_ecr_layers.core.engine.progress import ProgressListener
    from airflow_ecr_layers.core.engine.resume import FileResumeStore
    from airflow_ecr_layers.core.engine.transfer import EcrTransfer
    from airflow_ecr_layers.storage import Resolver

log = logging.getLogger("airflow_ecr_layers")


def split_reference(reference: str) -> tuple[str, list[str]]:
    """``team/model:v1`` -> (``team/model``, [``v1``]); no tag -> no tags."""
    repository, sep, tag = reference.rpartition(":")
    if not sep:
        return reference, []
    if not repository or "/" in tag:
        raise InvalidInputError(f"Invalid image reference {reference!r}: expected REPOSITORY[:TAG]")
    return repository, [tag]


def parse_annotations(pairs: Sequence[str]) -> dict[str, str]:
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"Invalid annotation {pair!r}: expected key=value")
        found[key] = value
    return found


def make_engine(
    args: argparse.Namespace,
    conn_id: str | None = None,
    region: str | None = None,
    progress: ProgressListener | None = None,
) -> EcrTransfer:
    """The engine on an Airflow connection (through the hook), or on the plain AWS chain."""
    conn_id = conn_id or args.conn_id
    region = region or args.region
    if conn_id:
        from airflow_ecr_layers.hooks import EcrLayersHook

        engine = EcrLayersHook(aws_conn_id=conn_id, region_name=region).engine
    else:
        import botocore.session

        from airflow_ecr_layers.core.engine.client import build_engine

        def client() -> Any:  # a new session reads the credentials chain again
            session = botocore.session.get_session()
            region_name = plain_region(session, region)
            return session.create_client("ecr", region_name=region_name, endpoint_url=args.endpoint_url)

        engine = build_engine(client(), refresh=client)
    engine.progress = progress
    return engine


def plain_region(session: Any, region: str | None) -> str | None:
    """``--region``, else botocore's own (``AWS_DEFAULT_REGION``, the profile), else ``AWS_REGION``,
    which botocore does not read but Lambda, ECS and the other AWS SDKs set."""
    return region or session.get_config_variable("region") or os.environ.get("AWS_REGION") or None


def storage_of(args: argparse.Namespace) -> Resolver:
    """How the command reads and writes object storage: through an Airflow connection with
    ``--conn-id``; without it fsspec (s3fs) on the plain AWS chain, and Airflow is never imported."""
    if args.conn_id:
        from airflow_ecr_layers.object_storage import resolver

        return resolver(args.conn_id)
    from airflow_ecr_layers.storage import PlainStorage

    return PlainStorage()


def cmd_pull(args: argparse.Namespace) -> dict[str, Any]:
    from airflow_ecr_layers.core.ecr.references import parse_reference
    from airflow_ecr_layers.core.readback.pull import pull_artifact
    from airflow_ecr_layers.storage import open_sink

    image = parse_reference(args.reference).with_defaults(args.registry_id, None)
    sink = open_sink(args.destination, storage_of(args))
    return pull_artifact(
        make_engine(args, region=image.region),
        image,
        sink,
        include=args.include,
        max_concurrency=args.max_concurrency,
        path=args.path,
    ).as_dict()


def cmd_copy(args: argparse.Namespace) -> dict[str, Any]:
    from airflow_ecr_layers.core.ecr.references import parse_reference
    from airflow_ecr_layers.core.readback.copy import copy_image

    source = parse_reference(args.source)
    target = parse_reference(args.destination, require_image=False)
    if target.digest:
        raise InvalidInputError("The destination takes tags, not a digest: the digest is the source's")
    tags = ([target.tag] if target.tag else []) + [t for t in args.tag if t != target.tag]
    return copy_image(
        make_engine(args, args.source_conn_id, source.region),
        source,
        make_engine(args, region=target.region),
        target.repository_name,
        registry_id=target.registry_id,
        tags=tags,
        include_referrers=args.include_referrers,
        part_size=args.part_size,
        max_concurrency=args.max_concurrency,
    ).as_dict()


def kms_client_of(args: argparse.Namespace, region: str | None) -> Any:
    """A KMS client on ``--conn-id``'s connection, or on the plain AWS chain (``AWS_ENDPOINT_URL_KMS``
    or ``AWS_ENDPOINT_URL`` set the endpoint there)."""
    if args.conn_id:
        from airflow_ecr_layers.hooks import EcrLayersHook

        return EcrLayersHook(aws_conn_id=args.conn_id, region_name=region or args.region).kms_client
    import botocore.session

    session = botocore.session.get_session()
    return session.create_client("kms", region_name=plain_region(session, region or args.region))


def cmd_sign(args: argparse.Namespace) -> dict[str, Any]:
    from airflow_ecr_layers.core.ecr.references import parse_reference
    from airflow_ecr_layers.core.signing.sign import sign_image
    from airflow_ecr_layers.kms_signing import KmsSigner

    image = parse_reference(args.reference).with_defaults(args.registry_id, None)
    signer = KmsSigner(kms_client_of(args, image.region), args.key)
    return sign_image(
        make_engine(args, region=image.region),
        image,
        signer,
        annotations=parse_annotations(args.annotation) or None,
        recursive=args.recursive,
        mode="referrers" if args.referrers else "tag",
    ).as_dict()


def cmd_verify(args: argparse.Namespace) -> dict[str, Any]:
    from airflow_ecr_layers.core.ecr.references import parse_reference
    from airflow_ecr_layers.core.signing.verify import verify_image
    from airflow_ecr_layers.kms_signing import load_verifier

    image = parse_reference(args.reference).with_defaults(args.registry_id, None)
    keys = [load_verifier(key, lambda: kms_client_of(args, image.region)) for key in args.key]
    required: dict[str, str | None] = {}
    for item in args.require:
        name, sep, value = item.partition("=")
        required[name] = value if sep else None
    return verify_image(
        make_engine(args, region=image.region),
        image,
        keys,
        required_annotations=required,
        accepted_references=args.accept_reference or None,
    ).as_dict()


def resume_store(args: argparse.Namespace) -> FileResumeStore | None:
    """Where a push records its uploads, so a rerun after a kill continues them (``--no-resume``: nowhere)."""
    if not args.resume:
        return None
    from airflow_ecr_layers.core.engine.resume import FileResumeStore

    return FileResumeStore()


def cmd_push(args: argparse.Namespace, progress: ProgressListener | None = None) -> dict[str, Any]:
    from airflow_ecr_layers.core.oci.layers import layers_of
    from airflow_ecr_layers.core.oci.manifest import DEFAULT_LAYER_MEDIA_TYPE
    from airflow_ecr_layers.core.push.artifact import push_artifact
    from airflow_ecr_layers.storage import open_sources

    *urls, reference = args.items
    if not urls:
        raise InvalidInputError("push needs at least one SOURCE before REPOSITORY[:TAG]")
    repository, tags = split_reference(reference)
    layers = layers_of(
        open_sources(urls, storage_of(args)),
        args.media_type or DEFAULT_LAYER_MEDIA_TYPE,
        chunk_size=args.chunk_size,
        expected_digest=args.expected_digest,
    )
    return push_artifact(
        make_engine(args, progress=progress),
        repository,
        layers,
        tags=tags + args.tag,
        artifact_type=args.artifact_type,
        annotations=parse_annotations(args.annotation),
        subject=args.subject,
        registry_id=args.registry_id,
        part_size=args.part_size,
        max_concurrency=args.max_concurrency,
        reuse=args.reuse,
        reuse_from=args.reuse_from,
        hash_first=args.hash_first,
        verify_reuse=args.verify_reuse,
        record_source=args.record_source,
        resume=resume_store(args),
    ).as_dict()


def cmd_build(args: argparse.Namespace, progress: ProgressListener | None = None) -> dict[str, Any]:
    from airflow_ecr_layers.core.build.image import build_image, files_of, platforms_of
    from airflow_ecr_layers.core.ecr.references import parse_reference
    from airflow_ecr_layers.core.readback.base_image import resolve_base
    from airflow_ecr_layers.storage import open_sources

    *urls, reference = args.items
    if not urls:
        raise InvalidInputError("build needs at least one SOURCE before REPOSITORY[:TAG]")
    repository, tags = split_reference(reference)
    files = files_of(open_sources(urls, storage_of(args), allow_empty=True), args.executable)
    platforms = platforms_of(args.platform)
    base = None
    if args.base:
        reference = parse_reference(args.base)
        base = resolve_base(make_engine(args, args.base_conn_id, reference.region), reference, platforms)
    return build_image(
        make_engine(args, progress=progress),
        repository,
        files,
        path=args.path,
        tags=tags + args.tag,
        platform=platforms,
        base=base,
        annotations=parse_annotations(args.annotation),
        labels=parse_annotations(args.label),
        registry_id=args.registry_id,
        part_size=args.part_size,
        max_concurrency=args.max_concurrency,
        resume=resume_store(args),
        reuse=args.reuse,
        reuse_from=args.reuse_from,
        verify_reuse=args.verify_reuse,
        compress="gzip" if args.gzip else None,
    ).as_dict()


def cmd_push_archive(args: argparse.Namespace, progress: ProgressListener | None = None) -> dict[str, Any]:
    from airflow_ecr_layers.core.archives.load import load_image
    from airflow_ecr_layers.core.push.image import push_image
    from airflow_ecr_layers.storage import open_image_archive

    repository, tags = split_reference(args.reference)
    archive = open_image_archive(args.source, storage_of(args))
    plan = load_image(archive, args.image_ref, gzip_layers=args.gzip_layers)
    return push_image(
        make_engine(args, progress=progress),
        repository,
        plan,
        tags=tags + args.tag,
        registry_id=args.registry_id,
        part_size=args.part_size,
        max_concurrency=args.max_concurrency,
        resume=resume_store(args),
    ).as_dict()


def cmd_plan(args: argparse.Namespace) -> dict[str, Any]:
    from airflow_ecr_layers.core.engine.planning import plan_parts
    from airflow_ecr_layers.storage import open_source

    source = open_source(args.source, storage_of(args))
    plan = plan_parts(source.size, args.part_size)
    return {
        "source": source.name,
        **plan.as_dict(),
        "ranges": [[first, last] for first, last in plan.ranges()],
    }


def reuse_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--no-reuse``, ``--reuse-from`` and ``--verify-reuse``, for push (``what``: sources) and build (files)."""
    parser.add_argument(
        "--no-reuse",
        dest="reuse",
        action="store_false",
        help=f"do not reuse the layers the previous run recorded for unchanged {what}",
    )
    parser.add_argument(
        "--reuse-from", metavar="TAG|DIGEST", help="reuse the layers of this image (default: the first tag)"
    )
    parser.add_argument(
        "--verify-reuse",
        action="store_true",
        help=f"hash the {what} a record would reuse; reuse a layer only if its bytes hash to the record",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="airflow-ecr-layers", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--conn-id", help="Airflow connection id, for ECR and the sources (default: the plain AWS credentials chain)"
    )
    common.add_argument("--region", help="AWS region")
    common.add_argument("--endpoint-url", help="ECR endpoint (without --conn-id; default from AWS_ENDPOINT_URL)")
    common.add_argument("--part-size", type=int, help="bytes per part (5 MiB to 20971520)")
    common.add_argument(
        "-v", "--verbose", action="store_true", help="log what happens to stderr (default: errors only)"
    )
    common.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="do not record uploads under the user cache folder, nor continue one a killed run left",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    push = sub.add_parser("push", parents=[common], help="push files as one OCI artifact")
    push.add_argument("items", nargs="+", metavar="SOURCE... REPOSITORY[:TAG]")
    push.add_argument("--tag", action="append", default=[], help="another tag (repeatable)")
    push.add_argument("--artifact-type", help="the manifest's artifactType")
    push.add_argument("--media-type", help="the layers' media type (default: application/octet-stream)")
    push.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE", help="manifest annotation")
    push.add_argument("--expected-digest", help="sha256 the (single) source must have")
    push.add_argument("--subject", help="digest of an image in the repository this artifact refers to")
    push.add_argument("--registry-id", help="12-digit account id of the registry")
    push.add_argument("--max-concurrency", type=int, default=DEFAULT_MAX_CONCURRENCY)
    push.add_argument("--chunk-size", type=int, help="split files larger than this many bytes into layers of it")
    reuse_options(push, "sources")
    push.add_argument(
        "--hash-first",
        action="store_true",
        help="hash each source first; upload only what ECR lacks (reads a changed source twice)",
    )
    push.add_argument(
        "--record-source",
        action="store_true",
        help="record the source URL, size and mtime in clear on the layers (default: only a digest of the identity)",
    )
    push.set_defaults(run=cmd_push)
    progress_option(push)

    build = sub.add_parser("build", parents=[common], help="build a data-only image of files (tar layers)")
    build.add_argument("items", nargs="+", metavar="SOURCE... REPOSITORY[:TAG]")
    build.add_argument("--path", default="/", help="the folder in the image the files land under (default /)")
    build.add_argument("--tag", action="append", default=[], help="another tag (repeatable)")
    build.add_argument(
        "--platform",
        action="append",
        default=[],
        help="OS/ARCH[/VARIANT] (repeatable or a,b; default linux/amd64, or on --base the base's platforms)",
    )
    build.add_argument(
        "--base", metavar="REF", help="base image: [REGISTRY.dkr.ecr.REGION.amazonaws.com/]REPOSITORY:TAG|@DIGEST"
    )
    build.add_argument("--base-conn-id", help="Airflow connection to read the base with (default: --conn-id)")
    build.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE", help="manifest annotation")
    build.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="image config label")
    build.add_argument(
        "--executable", action="append", default=[], metavar="GLOB", help="file names written with mode 0755"
    )
    build.add_argument(
        "--gzip", action="store_true", help="deterministic gzip layers (tar+gzip); the files are read twice"
    )
    build.add_argument("--registry-id", help="12-digit account id of the registry")
    build.add_argument("--max-concurrency", type=int, default=DEFAULT_MAX_CONCURRENCY)
    reuse_options(build, "files")
    build.set_defaults(run=cmd_build)
    progress_option(build)

    archive = sub.add_parser("push-archive", parents=[common], help="push a docker-save tarball or OCI layout")
    archive.add_argument("source", metavar="SOURCE")
    archive.add_argument("reference", metavar="REPOSITORY[:TAG]")
    archive.add_argument("--tag", action="append", default=[], help="another tag (repeatable)")
    archive.add_argument("--image-ref", help="which image of a multi-image archive ('*' = the whole index)")
    archive.add_argument(
        "--gzip-layers", action="store_true", help="docker-save: gzip layers on the fly into a Docker v2 schema 2 image"
    )
    archive.add_argument("--registry-id", help="12-digit account id of the registry")
    archive.add_argument("--max-concurrency", type=int, default=DEFAULT_MAX_CONCURRENCY)
    archive.set_defaults(run=cmd_push_archive)
    progress_option(archive)

    pull = sub.add_parser("pull", parents=[common], help="write an artifact's files to object storage")
    pull.add_argument("reference", metavar="REPOSITORY[:TAG|@DIGEST]")
    pull.add_argument("destination", metavar="DEST_URL", help="a folder or prefix: s3://bucket/prefix/, file:///dir/")
    pull.add_argument("--include", metavar="GLOB", help="only the files whose title matches")
    pull.add_argument(
        "--path",
        help="an image of tar layers: the folder in the image to extract (default: its build's --path, else /)",
    )
    pull.add_argument("--registry-id", help="12-digit account id of the registry")
    pull.add_argument("--max-concurrency", type=int, default=DEFAULT_MAX_CONCURRENCY)
    pull.set_defaults(run=cmd_pull)

    copy = sub.add_parser("copy", parents=[common], help="copy an image between repositories, accounts, regions")
    copy.add_argument(
        "source", metavar="SOURCE", help="[REGISTRY.dkr.ecr.REGION.amazonaws.com/]REPOSITORY[:TAG|@DIGEST]"
    )
    copy.add_argument("destination", metavar="DEST", help="[REGISTRY.dkr.ecr.REGION.amazonaws.com/]REPOSITORY[:TAG]")
    copy.add_argument("--tag", action="append", default=[], help="another destination tag (repeatable)")
    copy.add_argument("--include-referrers", action="store_true", help="also copy signatures, SBOMs (referrers)")
    copy.add_argument("--source-conn-id", help="Airflow connection to read the source with (default: --conn-id)")
    copy.add_argument("--max-concurrency", type=int, default=DEFAULT_MAX_CONCURRENCY)
    copy.set_defaults(run=cmd_copy)

    sign = sub.add_parser("sign", parents=[common], help="sign an image with a KMS key, as cosign does")
    sign.add_argument("reference", metavar="REPOSITORY[:TAG|@DIGEST]")
    sign.add_argument("--key", required=True, help="awskms:///alias/NAME, awskms:///ARN or awskms:///KEY_ID")
    sign.add_argument("--annotation", action="append", default=[], help="k=v in the payload's optional (repeatable)")
    sign.add_argument("--recursive", action="store_true", help="an index: also sign each child manifest")
    sign.add_argument("--referrers", action="store_true", help="store an OCI 1.1 referrer, not the .sig tag")
    sign.add_argument("--registry-id", help="12-digit account id of the registry")
    sign.set_defaults(run=cmd_sign)

    verify = sub.add_parser("verify", parents=[common], help="check an image's cosign signatures")
    verify.add_argument("reference", metavar="REPOSITORY[:TAG|@DIGEST]")
    verify.add_argument(
        "--key", action="append", required=True, help="awskms:///..., a PEM file or PEM text (repeatable)"
    )
    verify.add_argument("--require", action="append", default=[], help="NAME or NAME=VALUE the payload must hold")
    verify.add_argument("--accept-reference", action="append", default=[], help="a repository the payload may name")
    verify.add_argument("--registry-id", help="12-digit account id of the registry")
    verify.set_defaults(run=cmd_verify)

    plan = sub.add_parser("plan", parents=[common], help="dry run: print the part plan, write nothing")
    plan.add_argument("source", metavar="SOURCE")
    plan.set_defaults(run=cmd_plan)
    return parser


def progress_option(command: argparse.ArgumentParser) -> None:
    """``--no-progress``, for the commands that draw progress bars on a terminal."""
    command.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bars, even on a terminal (off a terminal there are none)",
    )


@contextlib.contextmanager
def log_level(verbose: bool) -> Iterator[None]:
    """Logs at INFO with ``-v``, else errors only; put back as they were afterwards.

    Airflow (imported only with ``--conn-id``) reads its own level when it is first
    imported: without ``-v`` it is asked for errors only too.
    """
    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    level = logging.INFO if verbose else logging.ERROR
    before = log.level, logging.root.level, os.environ.get(AIRFLOW_LOG_LEVEL)
    log.setLevel(level)
    logging.root.setLevel(level)  # botocore, s3fs, fsspec: the same
    if not verbose:
        os.environ.setdefault(AIRFLOW_LOG_LEVEL, "ERROR")
    try:
        yield
    finally:
        log.setLevel(before[0])
        logging.root.setLevel(before[1])
        if before[2] is None:
            os.environ.pop(AIRFLOW_LOG_LEVEL, None)


AIRFLOW_LOG_LEVEL = "AIRFLOW__LOGGING__LOGGING_LEVEL"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The sub-command, with progress bars on stderr when it draws them and stderr is a terminal."""
    if not (getattr(args, "progress", False) and sys.stderr.isatty()):
        result: dict[str, Any] = args.run(args)
        return result
    from airflow_ecr_layers.progress_bars import bars_and_logs

    with bars_and_logs(sys.stderr) as bars:
        result = args.run(args, bars)
    return result


EXIT_BAD_INPUT = 2
"""Bad input, found before anything was written: fix the command, do not retry it."""
EXIT_RETRYABLE = 3
"""A failure that a new try of the same command may get past (:data:`~airflow_ecr_layers.core.errors.RETRYABLE`)."""
EXIT_FAILED = 1
"""Anything else: ECR refused, a digest that does not match, an unexpected error."""


def exit_code(error: EcrLayersError) -> int:
    """The exit code for an error this package raised on purpose."""
    if isinstance(error, InvalidInputError):
        return EXIT_BAD_INPUT
    if isinstance(error, RETRYABLE):
        return EXIT_RETRYABLE
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with log_level(args.verbose), contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON
            result = run(args)
    except EcrLayersError as exc:
        print(f"airflow-ecr-layers: error: {exc}", file=sys.stderr)
        return exit_code(exc)
    except Exception as exc:  # noqa: BLE001 - a CLI reports, it does not dump tracebacks
        print(f"airflow-ecr-layers: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def console() -> None:
    """The ``airflow-ecr-layers`` command: :func:`main`, then out without tearing the
    interpreter down. The work is done and said by then, and the teardown (freeing botocore's
    models, every imported module) cost a tenth to a fifth of a second of a short command.
    Output and logs are flushed first; no thread is left working (the transfer joins its own)."""
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: the exit code still tells
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    console()
