"""Git and CI facts recorded as tags of every run."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:

    pass


def git_tags(cwd: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``git.commit``, ``git.branch`` and ``git.dirty`` of the checkout at ``cwd``; {} without git.

    ``git.dirty`` is ``"true"`` when tracked files differ from the commit
    (untracked files do not count: the store and the spool are usually untracked).
    CI checkouts are often a detached HEAD; the branch then comes from the CI's
    variables in ``env`` (default :data:`os.environ`): ``GITHUB_HEAD_REF`` or
    ``GITHUB_REF_NAME`` (for branch refs), ``CI_COMMIT_BRANCH`` or
    ``CI_MERGE_REQUEST_SOURCE_BRANCH_NAME``, ``BUILDKITE_BRANCH``,
    ``CIRCLE_BRANCH``, ``BRANCH_NAME``.
    """
    env = os.environ if env is None else env
    commit = _git(cwd, "rev-parse", "HEAD")
    if commit is None and _git(cwd, "rev-parse", "--git-dir") is None:
        return {}
    tags: dict[str, str] = {}
    if commit:
        tags["git.commit"] = commit
    branch = _git(cwd, "symbolic-ref", "--short", "-q", "HEAD") or _ci_branch(env)
    if branch:
        tags["git.branch"] = branch
    status = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    if status is not None:
        tags["git.dirty"] = "true" if status else "false"
    return tags


def _git(cwd: str | os.PathLike[str], *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},  # `git status` must not take the index lock
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _ci_branch(env: Mapping[str, str]) -> str | None:
    if env.get("GITHUB_HEAD_REF"):
        return env["GITHUB_HEAD_REF"]
    pull_request = env.get("GITHUB_REF", "").startswith("refs/pull/")
    if env.get("GITHUB_REF_NAME") and env.get("GITHUB_REF_TYPE", "branch") == "branch" and not pull_request:
        return env["GITHUB_REF_NAME"]
    for name in ("CI_COMMIT_BRANCH", "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "BUILDKITE_BRANCH", "CIRCLE_BRANCH",
                 "BRANCH_NAME"):
        if env.get(name):
            return env[name]
    return None


def ci_tags(env: Mapping[str, str]) -> dict[str, str]:
    """CI identifiers of the current job, as ``ci.*`` tags; {} outside CI.

    ``ci.provider`` is ``github``, ``gitlab`` or ``ci`` (any CI that sets ``CI``);
    then, when the provider gives them: ``ci.run_id``, ``ci.commit``, ``ci.ref``,
    ``ci.actor``, ``ci.repository``, ``ci.url``. GitHub Actions: ``GITHUB_RUN_ID``,
    ``GITHUB_SHA``, ``GITHUB_REF_NAME``, ``GITHUB_ACTOR``, ``GITHUB_REPOSITORY``
    (and the run's URL from ``GITHUB_SERVER_URL``). GitLab: ``CI_PIPELINE_ID``,
    ``CI_COMMIT_SHA``, ``CI_COMMIT_REF_NAME``, ``GITLAB_USER_LOGIN``,
    ``CI_PROJECT_PATH``, ``CI_PIPELINE_URL``. Others: ``BUILD_ID``, ``BUILD_URL``.
    """
    if env.get("GITHUB_ACTIONS") == "true":
        tags = {
            "ci.provider": "github",
            "ci.run_id": env.get("GITHUB_RUN_ID", ""),
            "ci.commit": env.get("GITHUB_SHA", ""),
            "ci.ref": env.get("GITHUB_REF_NAME", ""),
            "ci.actor": env.get("GITHUB_ACTOR", ""),
            "ci.repository": env.get("GITHUB_REPOSITORY", ""),
        }
        if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
            server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
            tags["ci.url"] = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    elif env.get("GITLAB_CI") == "true":
        tags = {
            "ci.provider": "gitlab",
            "ci.run_id": env.get("CI_PIPELINE_ID", ""),
            "ci.commit": env.get("CI_COMMIT_SHA", ""),
            "ci.ref": env.get("CI_COMMIT_REF_NAME", ""),
            "ci.actor": env.get("GITLAB_USER_LOGIN", ""),
            "ci.repository": env.get("CI_PROJECT_PATH", ""),
            "ci.url": env.get("CI_PIPELINE_URL", ""),
        }
    elif env.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        tags = {"ci.provider": "ci", "ci.run_id": env.get("BUILD_ID", ""), "ci.url": env.get("BUILD_URL", "")}
    else:
        return {}
    return {name: value for name, value in tags.items() if value}
