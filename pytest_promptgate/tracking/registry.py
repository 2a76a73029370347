"""MLflow's prompt registry: resolving and registering prompts, aliases, the audit trail."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .runs import MAX_TAG_VALUE, cut_value, value_text
from .store import Tracker, TrackingError, display_uri

if TYPE_CHECKING:

    pass


class RegistryError(TrackingError):
    """A registry prompt, alias or version that does not exist."""


def resolve_prompt(tracker: Tracker, name: str, *, alias: str | None = None, version: int | None = None) -> dict[str, Any]:
    """The registry prompt ``name`` at ``alias`` or ``version``, as plain data to pin for a session.

    ``{"name", "version", "template", "messages"}``: ``template`` for a text prompt,
    ``messages`` (``[[role, content], ...]``) for a chat prompt. Raises
    :class:`RegistryError` when the prompt, alias or version does not exist.
    """
    what = f"{name}@{alias}" if alias is not None else f"{name}/{version}"
    client = tracker.client
    with tracker._calling(f"resolving registry prompt {what}"):
        from mlflow.exceptions import MlflowException

        try:
            if alias is not None:
                found = client.get_prompt_version_by_alias(name, alias)
            else:
                found = client.get_prompt_version(name, version)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                raise
            found = None
        if found is None:
            exists = client.get_prompt(name) is not None
    if found is None:
        where = display_uri(tracker.uri)
        if not exists:
            raise RegistryError(f"registry prompt {name!r} does not exist in {where}")
        if alias is not None:
            raise RegistryError(f"registry prompt {name!r} has no alias {alias!r} in {where}")
        raise RegistryError(f"registry prompt {name!r} has no version {version} in {where}")
    template = found.template
    if isinstance(template, str):
        return {"name": name, "version": int(found.version), "template": template, "messages": None}
    messages = [[str(m.get("role", "user")), m.get("content") if isinstance(m.get("content"), str) else json.dumps(m.get("content"))]
                for m in template]
    return {"name": name, "version": int(found.version), "template": None, "messages": messages}


def register_prompt_version(
    tracker: Tracker, name: str, template: str | list[dict[str, str]], *, message: str, tags: Mapping[str, str],
    alias: str | None = None,
) -> int:
    """Register ``template`` as a new version of registry prompt ``name`` (created if new); point ``alias`` at it."""
    client = tracker.client
    with tracker._calling(f"registering a new version of prompt {name}"):
        version = client.register_prompt(name, template, commit_message=message,
                                         tags={k: cut_value(v, MAX_TAG_VALUE)[0] for k, v in tags.items()})
        if alias is not None:
            client.set_prompt_alias(name, alias, int(version.version))
    return int(version.version)


#: Prompt tags holding the plugin's promotion history, one event each: ``promptgate.audit.{time}-{id}``.
AUDIT_TAG_PREFIX = "promptgate.audit."


#: The DESIGN §7 audit keys, tagged on each justifying run and on the prompt version.
AUDIT_KEYS = ("action", "prompt_name", "from_version", "to_version", "alias", "timestamp", "actor")


def alias_version(tracker: Tracker, name: str, alias: str) -> int | None:
    """The version ``alias`` of prompt ``name`` points at; None when the alias is not set."""
    client = tracker.client
    with tracker._calling(f"reading alias {name}@{alias}"):
        from mlflow.exceptions import MlflowException

        try:
            found = client.get_prompt_version_by_alias(name, alias)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                raise
            return None
    return int(found.version) if found is not None else None


def set_alias(tracker: Tracker, name: str, alias: str, version: int) -> int | None:
    """Point ``alias`` of prompt ``name`` at ``version``; return what the alias reads back as afterwards."""
    client = tracker.client
    with tracker._calling(f"moving alias {name}@{alias} to version {version}"):
        client.set_prompt_alias(name, alias, int(version))
    return alias_version(tracker, name, alias)


def audit_history(tracker: Tracker, name: str) -> list[dict[str, Any]]:
    """Every promotion and rollback of prompt ``name`` recorded by this plugin, oldest first.

    The registry keeps no alias history (DESIGN §6.1), so each event is a prompt
    tag of its own; ``key`` in each event is its tag name.
    """
    client = tracker.client
    with tracker._calling(f"reading the promotion history of {name}"):
        prompt = client.get_prompt(name)
    if prompt is None:
        raise RegistryError(f"registry prompt {name!r} does not exist in {display_uri(tracker.uri)}")
    events = []
    for key, value in sorted((prompt.tags or {}).items()):
        if key.startswith(AUDIT_TAG_PREFIX):
            try:
                events.append({**json.loads(value), "key": key})
            except ValueError:
                continue
    return events


def record_audit(tracker: Tracker, event: Mapping[str, Any], run_ids: Sequence[str] = ()) -> str:
    """Record a promotion or rollback: in the prompt's history, on the version it moved to, on each run.

    ``event`` holds the :data:`AUDIT_KEYS` (and may hold more: ``forced``,
    ``reason``, ``reverts``, ``runs``). Returns the history tag's name.
    """
    name, version = str(event["prompt_name"]), int(event["to_version"])
    key = f"{AUDIT_TAG_PREFIX}{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:8]}"
    text = json.dumps(dict(event), sort_keys=True, default=str)
    # Every key, every time (empty when it does not apply): a version's tags show its latest event whole,
    # with nothing left over from an earlier one.
    keys = dict.fromkeys((*AUDIT_KEYS, "forced", "reason", "reverts"), "")
    keys.update({k: v for k, v in event.items() if k != "runs" and v is not None})
    tags = {f"audit.{k}": cut_value(value_text(v), MAX_TAG_VALUE)[0] if v != "" else "" for k, v in keys.items()}
    client = tracker.client
    with tracker._calling(f"recording the {event['action']} of {name}"):
        client.set_prompt_tag(name, key, text)
        for tag, value in tags.items():
            client.set_prompt_version_tag(name, version, tag, value)
        from mlflow.entities import RunTag

        for run_id in run_ids:
            client.log_batch(run_id, tags=[RunTag(tag, value) for tag, value in tags.items()])
    return key
