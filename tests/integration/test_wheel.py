"""The package as a user installs it: the wheel built from this checkout, installed into a fresh virtual environment
and run from a folder outside the checkout.

The wheel must hold every module and data file of ``search/``, ``pipelines/``, ``judges/``, the default configs and
the bundled samples (a subpackage once went missing from a hand-written list). The fresh environment gets the wheel
alone (``--no-deps``); its dependencies come from this environment's site-packages through a ``.pth`` line, which
does not run this environment's editable-install hook, so every ``ragsweep`` import resolves to the wheel's copy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.integration

CODE_FOLDERS = {"search": "ragsweep/search", "pipelines": "ragsweep/pipelines", "judges": "ragsweep/judges"}
DATA_FOLDERS = {
    "configs": "ragsweep/configs",
    "data/xquad_en": "ragsweep/data/xquad_en",
    "data/mixed_docs": "ragsweep/data/mixed_docs",
}


def _tracked(folder: str) -> list[str]:
    """The files git keeps under ``folder`` (what a fresh clone has), relative to it."""
    out = subprocess.run(["git", "ls-files", folder], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [line[len(folder) + 1 :] for line in out.splitlines() if line]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, set[str]]:
    """(the fresh environment's python, a work folder outside the checkout, the wheel's file names)."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(root / "dist"),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next((root / "dist").glob("ragsweep-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (site / "zz_ragsweep_test_deps.pth").write_text("\n".join(deps) + "\n")
    work = root / "work"
    work.mkdir()
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    return python, work, names


def test_the_wheel_holds_every_module_and_data_file(installed: tuple[Path, Path, set[str]]) -> None:
    _, _, names = installed
    missing = [
        f"{inside}/{rel}"
        for folder, inside in {**CODE_FOLDERS, **DATA_FOLDERS}.items()
        for rel in _tracked(folder)
        if f"{inside}/{rel}" not in names
    ]
    assert not missing, missing


def _run(python: Path, work: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAGSWEEP_CONFIG", "MLFLOW_TRACKING_URI")}
    env.update(RAY_AUTH_MODE="disabled", MLFLOW_DISABLE_TELEMETRY="true")
    return subprocess.run([str(python), *args], cwd=work, env=env, capture_output=True, text=True, timeout=timeout)


def test_every_module_imports_from_the_installed_package(installed: tuple[Path, Path, set[str]]) -> None:
    python, work, _ = installed
    code = (
        "import importlib, pkgutil, ragsweep.search, ragsweep.pipelines, ragsweep.judges\n"
        "names = [m.name for p in (ragsweep.search, ragsweep.pipelines, ragsweep.judges)\n"
        "         for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.')]\n"
        "files = {importlib.import_module(n).__file__ for n in names}\n"
        "print(len(names), sorted(files)[0])"
    )
    out = _run(python, work, "-c", code)
    assert out.returncode == 0, out.stderr[-3000:]
    count, first = out.stdout.split()
    assert int(count) > 60 and str(python.parent.parent) in first and str(REPO) not in first


def test_validate_init_and_a_tiny_search_run_from_the_wheel(installed: tuple[Path, Path, set[str]]) -> None:
    python, work, _ = installed
    cli = str(python.parent / "ragsweep")
    out = _run(python, work, cli, "validate")  # no --config: the installed default config and sample
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK — 48 documents, 1190 questions" in out.stdout and "site-packages/ragsweep/configs" in out.stdout
    out = _run(python, work, cli, "init", "proj")
    assert out.returncode == 0, out.stderr[-3000:]
    cfg = yaml.safe_load((work / "proj" / "config.yaml").read_text())
    cfg["dataset"]["holdout"] = 0
    cfg.update(
        space={
            "chunk_size": [400],
            "chunk_overlap": [0],
            "retriever": ["bm25"],
            "top_k": [2],
            "prompt": ["concise"],
            "temperature": [0.0],
        },
        judges={"suite": []},
        pipeline={"max_tokens": 8},
        search={
            "num_samples": 1,
            "max_concurrent_trials": 1,
            "questions_per_trial": 4,
            "shard_size": 4,
            "strategy": "joint",
            "scheduler": "fifo",
            "finalists": 1,
        },
    )
    (work / "proj" / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    out = _run(python, work, cli, "search", "--config", str(work / "proj" / "tiny.yaml"))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert '"model": "ragsweep-rag@champion (v1)"' in out.stdout, out.stdout[-2000:]
    assert (work / "ragsweep-runs" / "mlflow.db").is_file()  # storage_dir: relative to where the user ran it
