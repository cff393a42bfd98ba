#!/usr/bin/env bash
# Write the MLflow credentials a cluster.yaml cluster uses, into cluster-secrets/ beside cluster.yaml (git and the
# image ignore that folder; `ray up` copies it to every node as ~/ragsweep-secrets):
#   mlflow-server  the head's server: basic-auth admin password and session key (scripts/head_mlflow.sh reads it)
#   mlflow-client  the same login for the driver and every trial (cluster.yaml sources it before `ray start`)
# Both get a fresh random password. An existing file is never overwritten: delete it first to rotate (then
# `ray up` again; the password of an account that exists already is changed in MLflow's UI or API, see
# docs/cluster.md).
#
# Usage: bash scripts/cluster_secrets.sh [FOLDER]     (default: cluster-secrets beside this script's folder)
set -euo pipefail

dir="${1:-$(cd "$(dirname "$0")/.." && pwd)/cluster-secrets}"
mkdir -p "$dir"
umask 077
random() { python3 -c "import secrets; print(secrets.token_urlsafe(24))"; }

if [ -e "$dir/mlflow-server" ] || [ -e "$dir/mlflow-client" ]; then
  echo "cluster_secrets: $dir already holds mlflow-server or mlflow-client; nothing written (delete them to rotate)" >&2
  exit 1
fi
password="$(random)"
cat > "$dir/mlflow-server" <<EOF
# The head's MLflow server (scripts/head_mlflow.sh). Written by scripts/cluster_secrets.sh; edit freely.
MLFLOW_AUTH_ADMIN_PASSWORD=$password
MLFLOW_FLASK_SERVER_SECRET_KEY=$(random)
# Keep runs beyond \`ray down\`: a PostgreSQL database (password in PGPASSWORD) and an artifact bucket.
# MLFLOW_BACKEND_STORE_URI=postgresql://mlflow@db.internal:5432/mlflow
# PGPASSWORD=
# MLFLOW_ARTIFACTS_DESTINATION=s3://your-bucket/mlflow
EOF
cat > "$dir/mlflow-client" <<EOF
# What the driver and every trial log to MLflow with (cluster.yaml sources this before \`ray start\`).
MLFLOW_TRACKING_USERNAME=admin
MLFLOW_TRACKING_PASSWORD=$password
# A tracking server of your own instead of the head's (then none is started on the head):
# MLFLOW_TRACKING_URI=https://mlflow.example.com
EOF
echo "cluster_secrets: wrote $dir/mlflow-server and $dir/mlflow-client (mode 600)"
