"""Create a missing repository with its settings, or check that an existing one has them.

:class:`RepositorySettings` is what a DAG asks a repository to be: tag mutability (with
exclusion filters), scan on push, encryption, a lifecycle policy and resource tags. Every
setting is optional: one left out is neither sent at creation (ECR's default applies) nor
compared later. :func:`ensure_repository` creates the repository when it is missing
(``CreateRepository`` carries everything but the lifecycle policy, which
``PutLifecyclePolicy`` adds right after) and otherwise compares what ECR reports
(``DescribeRepositories``, ``GetLifecyclePolicy``, ``ListTagsForResource``) with the settings,
raising :class:`~airflow_ecr_layers.core.errors.RepositorySettingsMismatchError` that names
every difference. An existing repository is never changed.

What "differs" means:

- tag mutability, scan on push, encryption type: not equal;
- exclusion filters: not the same set of wildcard filters (their order does not matter);
- KMS key: a key ARN must be the one ECR reports (ECR reports the key's ARN, whatever form
  it was given in); a key id must be the id at the end of that ARN; an alias is resolved to
  its key's ARN by ``resolve_kms_key`` (the hook asks KMS ``DescribeKey``). ``KMS`` without
  a key (the AWS managed key) compares the type only;
- lifecycle policy: the parsed JSON differs (whitespace and key order do not count, nor the
  order of the rules, which ``rulePriority`` orders); a missing policy differs;
- resource tags: a subset check. Every tag asked for must be there with that value; other
  tags on the repository (added by an account's tag policy, a cost tool, a person) are fine.

Only the task whose ``CreateRepository`` succeeded puts anything on the repository: a
repository this call did not create is read, never written, whoever made it and however young
it is.

Two tasks creating one repository at once: the loser's ``CreateRepository`` answers
``RepositoryAlreadyExistsException``, which is not an error: it compares instead. Everything
but the lifecycle policy comes with ``CreateRepository`` itself (atomically), so any other
difference is final and named at once. The winner puts its lifecycle policy a moment after
creating the repository, so the loser may read it before that: when the repository was created
moments ago (the loser lost the create, or ECR's ``createdAt`` is within
:data:`RECENTLY_CREATED_SECONDS`) and its only difference is a missing lifecycle policy, the
loser waits, up to :data:`LIFECYCLE_POLICY_WAIT_SECONDS`, for a policy to appear, and compares
that. It never puts one: a young repository without a policy may be someone else's, made without
one on purpose. If none appears, the task fails naming the missing policy (the same happens
when an earlier try of the same task died between its two calls: put the policy by hand, or
delete the empty repository, and retry).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from airflow_ecr_layers.core.ecr.calls import EcrCalls
from airflow_ecr_layers.core.ecr.retry import RetryBudget, RetryPolicy
from airflow_ecr_layers.core.errors import (
    InvalidInputError,
    RepositoryAlreadyExistsError,
    RepositoryNotFoundError,
    RepositorySettingsMismatchError,
)
from airflow_ecr_layers.core.limits import validate_registry_id, validate_repository_name

log = logging.getLogger(__name__)

TAG_MUTABILITIES = ("MUTABLE", "IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION")
WITH_EXCLUSION = frozenset({"IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION"})
ENCRYPTION_TYPES = ("AES256", "KMS", "KMS_DSSE")
KMS_ENCRYPTION_TYPES = frozenset({"KMS", "KMS_DSSE"})
MAX_EXCLUSION_FILTERS = 5
EXCLUSION_FILTER = re.compile(r"[0-9a-zA-Z._*-]{1,128}")
"""A WILDCARD filter (``*`` for any characters), as the API's ``ImageTagMutabilityExclusionFilterValue``."""
MAX_RESOURCE_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
LIFECYCLE_POLICY_LENGTH = (100, 30720)
"""The API's bounds on ``lifecyclePolicyText``, in characters."""
RECENTLY_CREATED_SECONDS = 5 * 60
"""A repository this young (by ECR's ``createdAt`` against this machine's clock, with room for
skew between them) that lacks only its lifecycle policy may be waiting for its creator to put it."""
LIFECYCLE_POLICY_WAIT_SECONDS = 60.0
"""How long a task that did not create a young repository waits for its creator's lifecycle policy."""

SETTING_KEYS = (
    "image_tag_mutability",
    "image_tag_mutability_exclusion_filters",
    "scan_on_push",
    "encryption_type",
    "kms_key",
    "lifecycle_policy",
    "tags",
)


@dataclass(frozen=True)
class RepositorySettings:
    """The settings a repository is created with, and checked against when it exists.

    Build it from a DAG's dict with :meth:`from_dict`; the constructor validates too.

    :param image_tag_mutability: ``MUTABLE``, ``IMMUTABLE``, ``IMMUTABLE_WITH_EXCLUSION`` or
        ``MUTABLE_WITH_EXCLUSION``.
    :param image_tag_mutability_exclusion_filters: wildcard filters (``release-*``) of the tags
        that do the opposite of the mode; only with, and required by, the ``*_WITH_EXCLUSION`` modes.
    :param scan_on_push: basic scanning of every image pushed.
    :param encryption_type: ``AES256``, ``KMS`` or ``KMS_DSSE``.
    :param kms_key: the key's ARN, id or alias (``KMS``/``KMS_DSSE`` only); the AWS managed key if unset.
    :param lifecycle_policy: the policy's JSON text, compact (:meth:`from_dict` takes a dict too).
    :param tags: resource tags, as sorted ``(key, value)`` pairs.
    """

    image_tag_mutability: str | None = None
    image_tag_mutability_exclusion_filters: tuple[str, ...] = ()
    scan_on_push: bool | None = None
    encryption_type: str | None = None
    kms_key: str | None = None
    lifecycle_policy: str | None = None
    tags: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        _check_mutability(self.image_tag_mutability, self.image_tag_mutability_exclusion_filters)
        if self.scan_on_push is not None and not isinstance(self.scan_on_push, bool):
            raise InvalidInputError(f"scan_on_push must be true or false, got {self.scan_on_push!r}")
        _check_encryption(self.encryption_type, self.kms_key)
        if self.lifecycle_policy is not None:
            _parse_lifecycle_policy(self.lifecycle_policy)
            low, high = LIFECYCLE_POLICY_LENGTH
            if not low <= len(self.lifecycle_policy) <= high:
                raise InvalidInputError(
                    f"lifecycle_policy is {len(self.lifecycle_policy)} characters as compact JSON; "
                    f"ECR takes {low} to {high}"
                )
        _check_tags(self.tags)

    @classmethod
    def from_dict(cls, value: Mapping[str, Any] | RepositorySettings | None) -> RepositorySettings:
        """Settings from a DAG's dict (keys: :data:`SETTING_KEYS`). ``lifecycle_policy`` is a JSON
        string or a dict; ``tags`` a dict or a list of ``{"Key": ..., "Value": ...}``; exclusion
        filters are strings or ``{"filterType": "WILDCARD", "filter": ...}`` dicts."""
        if value is None:
            return cls()
        if isinstance(value, RepositorySettings):
            return value
        if not isinstance(value, Mapping):
            raise InvalidInputError(f"repository_settings must be a dict, got {type(value).__name__}: {value!r}")
        unknown = sorted(set(value) - set(SETTING_KEYS))
        if unknown:
            raise InvalidInputError(f"Unknown repository_settings keys {unknown}; known: {list(SETTING_KEYS)}")
        policy = value.get("lifecycle_policy")
        return cls(
            image_tag_mutability=value.get("image_tag_mutability"),
            image_tag_mutability_exclusion_filters=_exclusion_filters(
                value.get("image_tag_mutability_exclusion_filters")
            ),
            scan_on_push=value.get("scan_on_push"),
            encryption_type=value.get("encryption_type"),
            kms_key=value.get("kms_key") or None,
            lifecycle_policy=None if policy is None else _policy_text(policy),
            tags=_tag_pairs(value.get("tags")),
        )

    def create_parameters(self) -> dict[str, Any]:
        """CreateRepository's parameters for these settings (all but the lifecycle policy)."""
        params: dict[str, Any] = {}
        if self.tags:
            params["tags"] = [{"Key": key, "Value": value} for key, value in self.tags]
        if self.image_tag_mutability is not None:
            params["imageTagMutability"] = self.image_tag_mutability
        if self.image_tag_mutability_exclusion_filters:
            params["imageTagMutabilityExclusionFilters"] = [
                {"filterType": "WILDCARD", "filter": f} for f in self.image_tag_mutability_exclusion_filters
            ]
        if self.scan_on_push is not None:
            params["imageScanningConfiguration"] = {"scanOnPush": self.scan_on_push}
        if self.encryption_type is not None:
            params["encryptionConfiguration"] = {"encryptionType": self.encryption_type}
            if self.kms_key:
                params["encryptionConfiguration"]["kmsKey"] = self.kms_key
        return params

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe, and :meth:`from_dict` of it gives these settings back."""
        settings = asdict(self)
        settings["image_tag_mutability_exclusion_filters"] = list(self.image_tag_mutability_exclusion_filters)
        settings["tags"] = dict(self.tags)
        if self.lifecycle_policy is not None:
            settings["lifecycle_policy"] = json.loads(self.lifecycle_policy)
        return settings


# --- Validation --------------------------------------------------------------------------


def _check_mutability(mode: str | None, filters: tuple[str, ...]) -> None:
    if mode is not None and mode not in TAG_MUTABILITIES:
        raise InvalidInputError(f"Unknown image_tag_mutability {mode!r}; expected one of {list(TAG_MUTABILITIES)}")
    if filters and mode not in WITH_EXCLUSION:
        raise InvalidInputError(
            f"image_tag_mutability_exclusion_filters need image_tag_mutability IMMUTABLE_WITH_EXCLUSION or "
            f"MUTABLE_WITH_EXCLUSION (ECR refuses filters with {mode or 'no mode, which means MUTABLE'}); "
            f"for immutable tags except {list(filters)}, use IMMUTABLE_WITH_EXCLUSION"
        )
    if mode in WITH_EXCLUSION and not filters:
        raise InvalidInputError(
            f"image_tag_mutability {mode} needs image_tag_mutability_exclusion_filters (1 to "
            f"{MAX_EXCLUSION_FILTERS} wildcard filters such as 'release-*')"
        )
    if len(filters) > MAX_EXCLUSION_FILTERS:
        raise InvalidInputError(
            f"{len(filters)} image_tag_mutability_exclusion_filters given; ECR allows at most {MAX_EXCLUSION_FILTERS}"
        )
    for value in filters:
        if not isinstance(value, str) or not EXCLUSION_FILTER.fullmatch(value):
            raise InvalidInputError(
                f"Invalid image tag mutability exclusion filter {value!r}: 1-128 characters of "
                "letters, digits, '.', '_', '-' and the wildcard '*'"
            )
    if len(set(filters)) != len(filters):
        raise InvalidInputError(f"Duplicate image_tag_mutability_exclusion_filters: {list(filters)}")


def _exclusion_filters(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, Mapping)) or not isinstance(value, Iterable):
        value = [value]
    filters: list[Any] = []
    for item in value:
        if isinstance(item, Mapping):
            if item.get("filterType", "WILDCARD") != "WILDCARD" or set(item) - {"filterType", "filter"}:
                raise InvalidInputError(
                    f"Invalid image tag mutability exclusion filter {dict(item)!r}: expected "
                    "{'filterType': 'WILDCARD', 'filter': '...'} (WILDCARD is the only filter type) or a string"
                )
            item = item.get("filter")
        filters.append(item)
    return tuple(filters)


def _check_encryption(encryption_type: str | None, kms_key: str | None) -> None:
    if encryption_type is not None and encryption_type not in ENCRYPTION_TYPES:
        raise InvalidInputError(
            f"Unknown encryption_type {encryption_type!r}; expected one of {list(ENCRYPTION_TYPES)}"
        )
    if kms_key is None:
        return
    if not isinstance(kms_key, str) or not 1 <= len(kms_key) <= 2048:
        raise InvalidInputError(f"Invalid kms_key {kms_key!r}: a KMS key ARN, key id or alias")
    if encryption_type not in KMS_ENCRYPTION_TYPES:
        raise InvalidInputError(
            f"kms_key is given but encryption_type is {encryption_type!r}: a KMS key is used only with "
            "encryption_type KMS or KMS_DSSE"
        )


def _policy_text(policy: object) -> str:
    """The compact JSON text of a lifecycle policy given as a dict or a JSON string."""
    parsed = _parse_lifecycle_policy(policy) if isinstance(policy, str) else policy
    if not isinstance(parsed, Mapping):
        raise InvalidInputError(
            f"lifecycle_policy must be a JSON object or its text, got {type(policy).__name__}: {policy!r}"
        )
    return json.dumps(parsed, separators=(",", ":"))


def _parse_lifecycle_policy(text: str) -> dict[str, Any]:
    """The parsed policy, after the checks of its shape that need no knowledge of ECR's
    vocabulary (selection and action values are ECR's to judge: it adds new ones)."""
    try:
        policy = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"lifecycle_policy is not valid JSON: {exc}") from None
    if not isinstance(policy, dict) or not isinstance(policy.get("rules"), list) or not policy["rules"]:
        raise InvalidInputError(
            f'lifecycle_policy must be a JSON object with a non-empty "rules" list, got {text[:200]!r}'
        )
    priorities: list[object] = []
    for number, rule in enumerate(policy["rules"], 1):
        if not isinstance(rule, dict):
            raise InvalidInputError(f"lifecycle_policy rule {number} is not an object: {rule!r}")
        missing = [key for key in ("rulePriority", "selection", "action") if key not in rule]
        if missing:
            raise InvalidInputError(f"lifecycle_policy rule {number} lacks {missing}: {rule!r}")
        priority = rule["rulePriority"]
        if not isinstance(priority, int) or isinstance(priority, bool) or priority < 1:
            raise InvalidInputError(
                f"lifecycle_policy rule {number}: rulePriority must be a positive integer, got {priority!r}"
            )
        if not isinstance(rule["selection"], dict) or not isinstance(rule["action"], dict):
            raise InvalidInputError(f"lifecycle_policy rule {number}: selection and action must be objects")
        if "type" not in rule["action"]:
            raise InvalidInputError(f"lifecycle_policy rule {number}: the action has no type")
        priorities.append(priority)
    repeated = sorted({p for p in priorities if priorities.count(p) > 1})  # type: ignore[type-var]
    if repeated:
        raise InvalidInputError(f"lifecycle_policy: rulePriority {repeated} used by more than one rule")
    return policy


def _tag_pairs(tags: object) -> tuple[tuple[str, str], ...]:
    if tags is None:
        return ()
    if isinstance(tags, Mapping):
        pairs = list(tags.items())
    elif isinstance(tags, Iterable) and not isinstance(tags, str):
        pairs = []
        for tag in tags:
            if not isinstance(tag, Mapping) or "Key" not in tag:
                raise InvalidInputError(f"Invalid repository tag {tag!r}: expected {{'Key': ..., 'Value': ...}}")
            pairs.append((tag["Key"], tag.get("Value", "")))
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            raise InvalidInputError(f"Repository tag keys repeat: {keys}")
    else:
        raise InvalidInputError(f"tags must be a dict of key to value, got {type(tags).__name__}: {tags!r}")
    return tuple(sorted(pairs))


def _check_tags(tags: tuple[tuple[str, str], ...]) -> None:
    if len(tags) > MAX_RESOURCE_TAGS:
        raise InvalidInputError(f"{len(tags)} repository tags given; ECR allows at most {MAX_RESOURCE_TAGS}")
    for key, value in tags:
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_TAG_KEY:
            raise InvalidInputError(f"Invalid repository tag key {key!r}: 1-{MAX_TAG_KEY} characters")
        if key.lower().startswith("aws:"):
            raise InvalidInputError(f"Repository tag key {key!r}: the 'aws:' prefix is reserved for AWS")
        if not isinstance(value, str) or len(value) > MAX_TAG_VALUE:
            raise InvalidInputError(f"Invalid value {value!r} of repository tag {key!r}: a string of 0-{MAX_TAG_VALUE}")


# --- What ECR reports, and how it compares -----------------------------------------------


@dataclass(frozen=True)
class RepositoryState:
    """A repository's settings as ECR reports them."""

    registry_id: str
    repository_name: str
    repository_arn: str
    repository_uri: str
    created_at: float | None
    """Seconds since the epoch."""
    image_tag_mutability: str
    image_tag_mutability_exclusion_filters: tuple[str, ...]
    scan_on_push: bool
    encryption_type: str
    kms_key: str | None
    lifecycle_policy: str | None
    tags: Mapping[str, str]


def read_repository(
    calls: EcrCalls, retry_policy: RetryPolicy, repository_name: str, registry_id: str | None = None
) -> RepositoryState:
    """The repository's settings (DescribeRepositories, GetLifecyclePolicy, ListTagsForResource)."""
    budget = RetryBudget(retry_policy)
    found = budget.call("DescribeRepositories", lambda: calls.describe_repository(repository_name, registry_id))
    registry_id = str(found["registryId"])
    policy = budget.call("GetLifecyclePolicy", lambda: calls.get_lifecycle_policy(repository_name, registry_id))
    arn = str(found["repositoryArn"])
    tags = budget.call("ListTagsForResource", lambda: calls.list_tags_for_resource(repository_name, arn))
    created = found.get("createdAt")
    encryption = found.get("encryptionConfiguration") or {}
    return RepositoryState(
        registry_id=registry_id,
        repository_name=repository_name,
        repository_arn=arn,
        repository_uri=str(found.get("repositoryUri", "")),
        created_at=created.timestamp() if isinstance(created, datetime) else None,
        image_tag_mutability=str(found.get("imageTagMutability") or "MUTABLE"),
        image_tag_mutability_exclusion_filters=tuple(
            str(f["filter"]) for f in found.get("imageTagMutabilityExclusionFilters") or []
        ),
        scan_on_push=bool((found.get("imageScanningConfiguration") or {}).get("scanOnPush", False)),
        encryption_type=str(encryption.get("encryptionType") or "AES256"),
        kms_key=encryption.get("kmsKey"),
        lifecycle_policy=policy,
        tags=tags,
    )


KmsResolver = Callable[[str], str]
"""Maps a KMS key alias to its key's ARN."""


def differences(
    wanted: RepositorySettings, state: RepositoryState, resolve_kms_key: KmsResolver | None = None
) -> list[str]:
    """Each way ``state`` differs from ``wanted``, in words (empty: it has the settings)."""
    found: list[str] = []

    def compare(what: str, expected: object, actual: object) -> None:
        if expected is not None and expected != actual:
            found.append(f"{what}: {_shown(expected)} asked for, the repository has {_shown(actual)}")

    compare("image tag mutability", wanted.image_tag_mutability, state.image_tag_mutability)
    if wanted.image_tag_mutability is not None:
        compare(
            "image tag mutability exclusion filters",
            sorted(wanted.image_tag_mutability_exclusion_filters),
            sorted(state.image_tag_mutability_exclusion_filters),
        )
    compare("scan on push", wanted.scan_on_push, state.scan_on_push)
    compare("encryption type", wanted.encryption_type, state.encryption_type)
    if wanted.kms_key and not _same_kms_key(wanted.kms_key, state.kms_key, resolve_kms_key):
        found.append(f"KMS key: {wanted.kms_key!r} asked for, the repository uses {state.kms_key!r}")
    if wanted.lifecycle_policy is not None:
        found.extend(_policy_differences(wanted.lifecycle_policy, state.lifecycle_policy))
    for key, value in wanted.tags:
        if key not in state.tags:
            found.append(f"tag {key!r}: missing (asked for {value!r})")
        elif state.tags[key] != value:
            found.append(f"tag {key!r}: {value!r} asked for, the repository has {state.tags[key]!r}")
    return found


def _shown(value: object) -> str:
    return json.dumps(value) if isinstance(value, (bool, list)) else str(value)


def _same_kms_key(wanted: str, actual: str | None, resolve: KmsResolver | None) -> bool:
    if actual is None:
        return False
    if wanted == actual:
        return True
    if wanted.startswith("arn:") and ":key/" in wanted:
        return False  # a key ARN: ECR reports exactly this
    if wanted.startswith("alias/") or (wanted.startswith("arn:") and ":alias/" in wanted):
        return resolve is not None and resolve(wanted) == actual
    return actual.endswith(f":key/{wanted}")  # a key id


def _policy_differences(wanted: str, actual: str | None) -> list[str]:
    if actual is None:
        return [f"lifecycle policy: missing (asked for {wanted})"]
    try:
        found = json.loads(actual)
    except json.JSONDecodeError:
        return [f"lifecycle policy: the repository's is not JSON: {actual[:200]!r}"]
    return _json_differences(_by_priority(json.loads(wanted)), _by_priority(found), "lifecycle policy")


def _by_priority(policy: Any) -> Any:
    """The policy with its rules keyed by priority: rule order is not a difference."""
    rules = policy.get("rules") if isinstance(policy, dict) else None
    if not isinstance(rules, list) or not all(isinstance(r, dict) and "rulePriority" in r for r in rules):
        return policy
    keyed = {f"rule {r['rulePriority']}": r for r in rules}
    if len(keyed) != len(rules):
        return policy
    return {**{k: v for k, v in policy.items() if k != "rules"}, **keyed}


def _json_differences(expected: Any, actual: Any, path: str) -> list[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        found: list[str] = []
        for key in sorted(set(expected) | set(actual), key=str):
            where = f"{path} {key}" if str(key).startswith("rule ") or " " not in path else f"{path}.{key}"
            if key not in actual:
                found.append(f"{where}: missing (asked for {json.dumps(expected[key])})")
            elif key not in expected:
                found.append(f"{where}: not asked for (the repository has {json.dumps(actual[key])})")
            else:
                found.extend(_json_differences(expected[key], actual[key], where))
        return found
    if expected == actual:
        return []
    return [f"{path}: {json.dumps(expected)} asked for, the repository has {json.dumps(actual)}"]


# --- Ensure --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepositoryResult:
    """What :func:`ensure_repository` did, JSON-safe through :meth:`as_dict`."""

    registry_id: str
    repository_name: str
    repository_uri: str
    repository_arn: str
    created: bool
    """True when this call created the repository."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ensure_repository(
    calls: EcrCalls,
    retry_policy: RetryPolicy,
    repository_name: str,
    settings: RepositorySettings,
    *,
    registry_id: str | None = None,
    resolve_kms_key: KmsResolver | None = None,
    now: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> RepositoryResult:
    """Create ``repository_name`` with ``settings`` when missing; otherwise check that it has them.

    Only a repository this call created is written to (its lifecycle policy, right after
    ``CreateRepository``). For one created moments ago by someone else, lacking only the
    lifecycle policy, it waits up to :data:`LIFECYCLE_POLICY_WAIT_SECONDS` (``now`` and
    ``sleep`` tell and pass the time) for the creator to put it.

    :raises RepositorySettingsMismatchError: the repository exists with other settings (each named).
    :raises EcrServiceError: ECR refused (a KMS key it cannot use, a policy it rejects, a quota).
    """
    name = validate_repository_name(repository_name)
    registry_id = validate_registry_id(registry_id)
    budget = RetryBudget(retry_policy)
    lost_race = False
    try:
        state = read_repository(calls, retry_policy, name, registry_id)
    except RepositoryNotFoundError:
        try:
            created = budget.call(
                "CreateRepository", lambda: calls.create_repository(name, registry_id, **settings.create_parameters())
            )
        except RepositoryAlreadyExistsError:
            log.info("Repository %s was created by someone else a moment ago; checking its settings", name)
            lost_race = True
            state = read_repository(calls, retry_policy, name, registry_id)
        else:
            created_in = str(created["registryId"])
            if settings.lifecycle_policy is not None:
                text = settings.lifecycle_policy
                budget.call("PutLifecyclePolicy", lambda: calls.put_lifecycle_policy(name, text, created_in))
            log.info("Created repository %s with %s", created["repositoryUri"], settings.as_dict())
            return RepositoryResult(
                created_in, name, str(created["repositoryUri"]), str(created["repositoryArn"]), created=True
            )
    state, waited = _with_creators_policy(calls, retry_policy, settings, state, lost_race, now, sleep, resolve_kms_key)
    found = differences(settings, state, resolve_kms_key)
    if found:
        if waited is not None:
            found = [
                f"{d} (waited {waited:.0f}s for the task that created the repository to put one; none came)"
                if d.startswith("lifecycle policy: missing")
                else d
                for d in found
            ]
        raise RepositorySettingsMismatchError(name, state.registry_id, found)
    log.info("Repository %s exists with the settings asked for", state.repository_uri)
    return RepositoryResult(state.registry_id, name, state.repository_uri, state.repository_arn, created=False)


def _with_creators_policy(
    calls: EcrCalls,
    retry_policy: RetryPolicy,
    settings: RepositorySettings,
    state: RepositoryState,
    lost_race: bool,
    now: Callable[[], float],
    sleep: Callable[[float], None],
    resolve_kms_key: KmsResolver | None,
) -> tuple[RepositoryState, float | None]:
    """``state`` with the lifecycle policy its creator put while this waited, and how long it
    waited (None: it did not wait).

    It waits only for a repository created moments ago that lacks nothing but a policy: its
    creator (another task racing this one) puts the policy right after ``CreateRepository``. It
    reads, never writes: the repository is not this task's to change.
    """
    if settings.lifecycle_policy is None or state.lifecycle_policy is not None:
        return state, None
    started = now()
    young = lost_race or (state.created_at is not None and started - state.created_at < RECENTLY_CREATED_SECONDS)
    if not young or differences(replace(settings, lifecycle_policy=None), state, resolve_kms_key):
        return state, None
    log.info(
        "Repository %s was created moments ago and has no lifecycle policy yet; waiting up to %.0fs for its "
        "creator to put one",
        state.repository_name,
        LIFECYCLE_POLICY_WAIT_SECONDS,
    )
    deadline = started + LIFECYCLE_POLICY_WAIT_SECONDS
    delay = 0.25
    while True:
        remaining = deadline - now()
        if remaining <= 0:
            return state, LIFECYCLE_POLICY_WAIT_SECONDS
        sleep(min(delay, remaining))
        delay = min(delay * 2, 5.0)
        policy = RetryBudget(retry_policy).call(
            "GetLifecyclePolicy",
            lambda: calls.get_lifecycle_policy(state.repository_name, state.registry_id),
        )
        if policy is not None:
            log.info("Repository %s: its creator put its lifecycle policy", state.repository_name)
            return replace(state, lifecycle_policy=policy), now() - started
