"""The package's shape: one `ragsweep` namespace, wings without import cycles, registries as the only name lists."""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

import pytest

from ragsweep.judges.custom import CustomJudgeSpec
from ragsweep.pipelines.base.registry import Registry, UnknownName
from ragsweep.pipelines.llm_client.client import ClientStats
from ragsweep.search.config import load_config
from tests.conftest import REPO

PACKAGES = {"search": "ragsweep.search", "pipelines": "ragsweep.pipelines", "judges": "ragsweep.judges"}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


@functools.cache
def _tree(path: Path) -> ast.Module:
    """Each file parsed once per session (several tests read the same trees)."""
    return ast.parse(path.read_text(encoding="utf-8"))


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every ragsweep module ``path`` imports, at module level or inside functions (hidden cycles count too)."""
    found: set[str] = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def test_only_the_ragsweep_namespace_is_imported() -> None:
    """No source, test or benchmark imports the bare folder names: they are not installed."""
    bad = []
    for path in [
        *REPO.glob("search/**/*.py"),
        *REPO.glob("pipelines/**/*.py"),
        *REPO.glob("judges/**/*.py"),
        *REPO.glob("tests/**/*.py"),
        *REPO.glob("benchmarks/**/*.py"),
    ]:
        for node in ast.walk(_tree(path)):
            mods = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            bad += [f"{path.relative_to(REPO)}: {m}" for m in mods if m.split(".")[0] in PACKAGES]
    assert not bad, bad


def test_installed_names_outside_the_checkout(tmp_path: Path) -> None:
    code = (
        "import importlib.util as u, ragsweep.search.cli, ragsweep.pipelines, ragsweep.judges\n"
        "print([n for n in ('search', 'pipelines', 'judges') if u.find_spec(n) is not None])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(m: str, path: list[str]) -> bool:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle.extend(path[path.index(n) :] + [m, n] if n in path else [m, n])
                return True
            if n not in state and visit(n, [*path, m]):
                return True
        state[m] = 2
        return False

    for m in sorted(graph):
        if m not in state and visit(m, []):
            break
    assert not cycle, " -> ".join(cycle)


WINGS = ("serving", "tracking", "promotion", "questions", "screen", "commands")
CORE = ("ragsweep.search.config", "ragsweep.search.space", "ragsweep.search.registries", "ragsweep.search.schema")
CORE_PACKAGES = ("config",)  # core split into modules: ragsweep.search.config.* is core too


def _core(module: str) -> bool:
    return module in CORE or any(module.startswith(f"ragsweep.search.{p}.") for p in CORE_PACKAGES)


def _uphill(importer: str, imported: str) -> bool:
    """Imports flow one way: search -> judges -> pipelines -> pipelines.base, and inside search the core modules
    (config, space, registries, schema) import no wing (the wings import the core)."""
    if importer.startswith("ragsweep.pipelines.base") and not imported.startswith("ragsweep.pipelines.base"):
        return True  # the base every wing may import imports nothing above it
    layer = {"ragsweep.pipelines": 0, "ragsweep.judges": 1, "ragsweep.search": 2}
    a, b = (layer[".".join(m.split(".")[:2])] for m in (importer, imported))
    if b > a:
        return True
    return _core(importer) and imported.split(".")[2:3] != [] and imported.split(".")[2] in WINGS


def test_imports_flow_one_way() -> None:
    modules = _modules()
    uphill = sorted(f"{m} -> {n}" for m, p in modules.items() for n in _imports(p, modules) if _uphill(m, n))
    assert not uphill, uphill


def test_search_wings() -> None:
    """The search package keeps the search itself; serving, tracking, promotion, questions (test sets) and screen
    (the free retrieval evidence) are wings of their own."""
    wings = {p.name for p in (REPO / "search").iterdir() if (p / "__init__.py").exists()} - set(CORE_PACKAGES)
    assert wings == set(WINGS)
    assert len(list((REPO / "search").glob("*.py"))) <= 19


def test_registry_did_you_mean_and_docs() -> None:
    reg: Registry[int] = Registry("colour")
    reg.add("red", "warm", 1)
    reg.add("blue", "cold", "math:pi")
    assert reg.get("red") == 1 and abs(reg.get("blue") - 3.14159) < 1e-4  # lazy target imported on use
    with pytest.raises(UnknownName, match=r"unknown colour 'rde' \(did you mean 'red'\?\); known: red, blue"):
        reg.get("rde")
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("red", "again")
    assert "| `blue` | cold |" in reg.markdown()


def test_registries_drive_config_cli_and_docs(tmp_path: Path) -> None:
    from ragsweep.search import registries
    from ragsweep.search.commands.common import choices as _choices
    from ragsweep.search.docs import registry_tables

    assert _choices("sampler") == list(registries.SAMPLERS.names())
    docs = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    assert registry_tables() in docs, "docs/config.md is out of date: python -m ragsweep.search.docs"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("search:\n  sampler: tpee\n")
    with pytest.raises(ValueError, match=r"line 2, search.sampler: unknown sampler 'tpee' \(did you mean 'tpe'\?\)"):
        load_config(cfg)


@pytest.mark.parametrize("name", ["requests", "failed", "tokens", "busy_s", "prompt_tokens", "repaired"])
def test_custom_judge_scores_never_share_a_name_with_usage_counters(name: str) -> None:
    spec = CustomJudgeSpec(name=name, definition="d", grading_prompt="g", reads=["answer"])
    stats = ClientStats(requests=3, prompt_tokens=10)
    counters = {
        **stats.as_metrics("judge"),
        "llm.judge.failed": 0.0,
        "llm.judge.repaired": 0.0,
        "llm.judge.tokens": 0.0,
    }
    assert spec.metric not in counters
    assert all(k.startswith("llm.judge.") for k in counters)


@pytest.mark.parametrize("name", ["x_nan", "x_ci_low", "x_ci_high", "correctness"])
def test_custom_judge_names_that_would_collide_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="ragsweep adds|built-in"):
        CustomJudgeSpec(name=name, definition="d", grading_prompt="g", reads=["answer"])


def test_a_failed_trial_is_shown_with_its_exception_line(tmp_path: Path) -> None:
    from ragsweep.search.console import error_line

    f = tmp_path / "error.txt"
    f.write_text(
        'Failure # 1\nTraceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
        "ray.exceptions.RayTaskError(TrackingLost): ray::run_trial()\n"
        "ragsweep.search.tracking.runs.TrackingLost: trial t1: could not log the metrics to MLflow\n\n"
    )
    assert error_line(str(f)).endswith("TrackingLost: trial t1: could not log the metrics to MLflow")
    assert error_line(str(tmp_path / "missing.txt")) == "no error file"


def test_every_space_and_pipeline_key_has_a_row_in_the_config_docs() -> None:
    from ragsweep.search.config import PipelineSettings
    from ragsweep.search.space import SearchSpace

    docs = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    missing = [
        f"{section}.{key}"
        for section, model in (("space", SearchSpace), ("pipeline", PipelineSettings))
        for key in model.model_fields
        if f"| `{key}` |" not in docs
    ]
    assert not missing, f"docs/config.md has no row for {missing}"


def test_every_package_folder_is_in_the_wheel() -> None:
    """pyproject's package list is written by hand (setuptools maps search/ to ragsweep.search): a subpackage left
    out of it installs from the checkout but is missing from the wheel."""
    import tomllib

    tops = ("search", "pipelines", "judges")
    listed = {
        p
        for p in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
        if p.split(".")[1] in tops
    }  # (the others are data: tests/integration/test_wheel.py checks them)
    found = {
        "ragsweep." + ".".join(p.parent.relative_to(REPO).parts)
        for top in tops
        for p in (REPO / top).rglob("__init__.py")
    }
    assert found == listed, f"missing from pyproject: {sorted(found - listed)}; absent: {sorted(listed - found)}"
