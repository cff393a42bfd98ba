"""What the driver hands trial workers through Ray's runtime_env, which Ray's job and state APIs (the dashboard)
show: MLflow's settings and ragsweep's worker settings, never a credential. A Ray of the driver's own inherits the
credentials from the driver's environment; a cluster's nodes have their own (the pods' Secret)."""

from __future__ import annotations

import pytest

from ragsweep.search.startup import WORKER_ENV, worker_env

CREDENTIALS = {
    "MLFLOW_TRACKING_USERNAME": "admin",
    "MLFLOW_TRACKING_PASSWORD": "planted-password-4242",
    "MLFLOW_TRACKING_TOKEN": "planted-token-5151",
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "planted-flask-6161",
    "MLFLOW_S3_ACCESS_KEY": "planted-key-7171",
    "MLFLOW_GATEWAY_CREDENTIALS": "planted-creds-8181",
}
SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_TRACKING_INSECURE_TLS": "false",
    "MLFLOW_TRACKING_SERVER_CERT_PATH": "/etc/ssl/mlflow.pem",
    "RAY_AUTH_MODE": "disabled",
}


def test_runtime_env_carries_settings_and_no_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**CREDENTIALS, **SETTINGS, "MLFLOW_RUN_ID": "abc", "AWS_SECRET_ACCESS_KEY": "x"}.items():
        monkeypatch.setenv(name, value)
    env = worker_env()
    assert not set(CREDENTIALS) & set(env), sorted(set(CREDENTIALS) & set(env))
    assert not [v for v in env.values() if v.startswith("planted-")]
    assert {k: env[k] for k in SETTINGS} == SETTINGS
    assert "MLFLOW_RUN_ID" not in env and "AWS_SECRET_ACCESS_KEY" not in env  # implicit run; not MLflow's at all
    assert WORKER_ENV.items() <= env.items()
