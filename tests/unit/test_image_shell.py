"""The image's commands are found whatever shell KubeRay starts Ray with, as the image's non-root user.

No Docker here, so the equivalent on this Debian machine: Debian's own /etc/profile (the image's base is Debian too)
run as uid 10001 in a login-shell sequence, with the image's layout rebuilt in a temporary root: the project's
environment at <root>/opt/ragsweep/.venv (its `ray` is this environment's), the Dockerfile's ENV PATH, and the
profile.d script the Dockerfile copies. Without the script, Debian's profile drops the environment from PATH (the
`ray: command not found` of KubeRay v1.3); with it, `ray --version` runs in both shells."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from tests.conftest import REPO

IMAGE_ROOT = "/opt/ragsweep"
DEBIAN_PROFILE = Path("/etc/profile")


def _dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def _image_user() -> int:
    (user,) = re.findall(r"^USER (\d+)$", _dockerfile(), re.M)
    return int(user)


@pytest.fixture
def image_root() -> Iterator[Path]:
    """A world-readable folder laid out as the image: /opt/ragsweep/.venv/bin and /etc/profile(.d)."""
    profile = DEBIAN_PROFILE.read_text() if DEBIAN_PROFILE.exists() else ""
    if 'PATH="/usr/local/bin:/usr/bin:/bin' not in profile or "/etc/profile.d/*.sh" not in profile:
        pytest.skip("needs Debian's /etc/profile (base-files), the one the image's base ships")
    root = Path(tempfile.mkdtemp(prefix="image-root-"))
    try:
        root.chmod(0o755)
        venv_bin = root / IMAGE_ROOT.lstrip("/") / ".venv" / "bin"
        venv_bin.mkdir(parents=True)
        (venv_bin / "ray").symlink_to(Path(sys.executable).parent / "ray")
        (root / "etc" / "profile.d").mkdir(parents=True)
        (root / "etc" / "profile").write_text(profile.replace("/etc/profile.d", f"{root}/etc/profile.d"))
        for p in root.rglob("*"):
            if not p.is_symlink():
                p.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root)


def _install_profile_script(root: Path) -> None:
    (src, dest) = re.search(r"^COPY (scripts/\S+) (/etc/profile\.d/\S+\.sh)$", _dockerfile(), re.M).groups()  # type: ignore[union-attr]
    text = (REPO / src).read_text().replace(IMAGE_ROOT, f"{root}{IMAGE_ROOT}")
    target = root / dest.lstrip("/")
    target.write_text(text)
    target.chmod(0o644)


def _shell(root: Path, login: bool, uid: int | None) -> subprocess.CompletedProcess[str]:
    """`bash -c` with the image's ENV PATH, as ``uid`` (None: this user); ``login`` reads /etc/profile first, as
    `bash -lc` does. Prints where `ray` resolves, then (as this user, who may run this machine's Python, kept
    where uid 10001 may not read it) `ray --version`."""
    (env_path,) = re.findall(r"^ENV PATH=(\S+)", _dockerfile(), re.M)
    path = env_path.replace(IMAGE_ROOT, f"{root}{IMAGE_ROOT}").replace("$PATH", "/usr/local/bin:/usr/bin:/bin")
    script = (f". {root}/etc/profile; " if login else "") + "command -v ray" + ("" if uid else " && ray --version")
    as_user = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] if uid else []
    env = {"PATH": path, "HOME": str(root)}
    return subprocess.run(
        [*as_user, "bash", "--noprofile", "--norc", "-c", script], env=env, capture_output=True, text=True, timeout=120
    )


def _users() -> list[int | None]:
    """The image's user when this test may switch to it (root, setpriv), and this user (Debian's profile resets
    PATH for root too)."""
    return [_image_user(), None] if os.geteuid() == 0 and shutil.which("setpriv") else [None]


def test_a_login_shell_finds_ray_only_with_the_profile_script(image_root: Path) -> None:
    for uid in _users():  # Debian's profile drops the environment from PATH: the bug KubeRay v1.3 hits
        before = _shell(image_root, login=True, uid=uid)
        assert before.returncode != 0 and not before.stdout, (uid, before.stdout)
    _install_profile_script(image_root)
    for uid in _users():
        for login in (True, False):
            out = _shell(image_root, login=login, uid=uid)
            assert out.returncode == 0, (uid, login, out.stderr[-2000:])
            assert out.stdout.splitlines()[0] == f"{image_root}{IMAGE_ROOT}/.venv/bin/ray", (uid, login)
            if uid is None:
                assert ray.__version__ in out.stdout


def test_the_profile_script_adds_the_environment_once(image_root: Path) -> None:
    """Sourced again (a login shell inside a login shell), PATH does not grow."""
    _install_profile_script(image_root)
    script = f". {image_root}/etc/profile; . {image_root}/etc/profile; echo $PATH"
    out = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", script],
        env={"HOME": str(image_root)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.count(f"{IMAGE_ROOT}/.venv/bin") == 1, out.stdout
