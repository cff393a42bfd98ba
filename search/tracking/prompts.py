"""Prompt templates in MLflow's prompt registry: one registry version per distinct template text.

Contract: :func:`register_templates` makes sure each given template is in the registry as
``<model_name>-<template>`` (a chat prompt whose ``{question}``/``{context}`` slots become MLflow's
``{{question}}``/``{{context}}``) and returns its ``prompts:/<name>/<version>`` URI. It is idempotent: a version
whose tag ``ragsweep.prompt_version`` (the template's text hash) matches is reused, so versions are created
once per distinct text. The templates stay files in the repository; the registry is their record.
:func:`alias_champion_prompt` points the alias ``champion`` at the champion trial's prompt version.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import mlflow
from mlflow import MlflowClient

from ragsweep.pipelines.prompts import PromptTemplate

TAG_HASH = "ragsweep.prompt_version"


def registry_name(model_name: str, template: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{model_name}-{template}")


def _chat(t: PromptTemplate, redact: Callable[[str], str]) -> list[dict[str, str]]:
    user = redact(t.user).replace("{question}", "{{question}}").replace("{context}", "{{context}}")
    return [{"role": "system", "content": redact(t.system)}, {"role": "user", "content": user}]


def register_templates(
    templates: Iterable[PromptTemplate], model_name: str, redact: Callable[[str], str] = str
) -> dict[str, str]:
    """Template name -> ``prompts:/<name>/<version>``, registering a version only for a text not seen before.

    ``redact`` masks the registered text (``mlflow.redact``); the version tag stays the file text's hash."""
    client = MlflowClient()
    out = {}
    for t in templates:
        name = registry_name(model_name, t.name)
        version = _existing(client, name, t.version)
        if version is None:
            pv = mlflow.genai.register_prompt(
                name,
                _chat(t, redact),
                commit_message=f"ragsweep template {t.name!r}",
                tags={TAG_HASH: t.version, "ragsweep.template": t.name},
            )
            version = int(pv.version)
        out[t.name] = f"prompts:/{name}/{version}"
    return out


def _existing(client: MlflowClient, name: str, text_hash: str) -> int | None:
    if client.get_prompt(name) is None:
        return None
    token = None
    while True:
        page = client.search_prompt_versions(name, max_results=100, page_token=token)
        for pv in page:
            if pv.tags.get(TAG_HASH) == text_hash:
                return int(pv.version)
        token = page.token
        if not token:
            return None


def alias_champion_prompt(uri: str, alias: str = "champion") -> None:
    _, name, version = uri.rsplit("/", 2)
    MlflowClient().set_prompt_alias(name, alias, int(version))
