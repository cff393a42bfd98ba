#!/usr/bin/env bash
# The MLflow tracking server of a cluster.yaml head (head_start_ray_commands runs this): started once, detached,
# and this script returns only when it answers, so a `ray submit` right after `ray up` finds it. Running it again
# (a second `ray up`) starts no second server.
#
# Usage: bash scripts/head_mlflow.sh [PORT]      (default 5000)
#
# Settings come from the environment, or from ~/ragsweep-secrets/ (cluster-secrets/ beside cluster.yaml on your
# machine, copied to every node by its file_mounts; scripts/cluster_secrets.sh writes both files):
#   mlflow-server  the server's own settings:
#     MLFLOW_BACKEND_STORE_URI        where runs go, e.g. postgresql://mlflow@db.internal:5432/mlflow with the
#                                     password in PGPASSWORD (libpq's variable); default SQLite in ~/mlflow, which
#                                     `ray down` deletes with the head
#     MLFLOW_ARTIFACTS_DESTINATION    e.g. s3://your-bucket/mlflow; default ~/mlflow/artifacts
#     MLFLOW_AUTH_ADMIN_PASSWORD      turns on MLflow's basic-auth app; its admin account is `admin`
#     MLFLOW_FLASK_SERVER_SECRET_KEY  required with it (signs the UI's sessions)
#     MLFLOW_AUTH_DATABASE_URI        the auth app's users and permissions; default SQLite in ~/mlflow
#   mlflow-client  what the driver and every trial log with (cluster.yaml sources it before `ray start`):
#     MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, and MLFLOW_TRACKING_URI for a server of your own:
#     when that is set, no server is started here; this script waits for that one instead.
# No password is ever on a command line (`ps` shows those to every user of the node).
set -euo pipefail

port="${1:-5000}"
secrets="$HOME/ragsweep-secrets"
# Only mlflow-client may name another server: the head's ~/.bashrc exports MLFLOW_TRACKING_URI for its own one.
unset MLFLOW_TRACKING_URI
for f in "$secrets/mlflow-server" "$secrets/mlflow-client"; do
  if [ -f "$f" ]; then
    set -a
    # shellcheck disable=SC1090
    . "$f"
    set +a
  fi
done
mkdir -p "$HOME/mlflow"
log="$HOME/mlflow/server.log"

if [ -n "${MLFLOW_TRACKING_URI:-}" ]; then
  url="${MLFLOW_TRACKING_URI%/}"
  echo "[head_mlflow] MLFLOW_TRACKING_URI is set ($secrets/mlflow-client): using that server, starting none"
else
  url="http://127.0.0.1:$port"
  pidfile="$HOME/mlflow/server.pid"
  if ! kill -0 "$(cat "$pidfile" 2>/dev/null)" 2>/dev/null; then
    export MLFLOW_BACKEND_STORE_URI="${MLFLOW_BACKEND_STORE_URI:-sqlite:///$HOME/mlflow/mlflow.db}"
    export MLFLOW_ARTIFACTS_DESTINATION="${MLFLOW_ARTIFACTS_DESTINATION:-$HOME/mlflow/artifacts}"
    args=(--host 0.0.0.0 --port "$port")
    if [ -n "${MLFLOW_AUTH_ADMIN_PASSWORD:-}" ]; then
      : "${MLFLOW_FLASK_SERVER_SECRET_KEY:?is required with MLFLOW_AUTH_ADMIN_PASSWORD (in $secrets/mlflow-server)}"
      # The same auth settings as k8s/mlflow.yaml: nobody may do anything until the admin grants it.
      cat > "$HOME/mlflow/basic_auth.ini" <<EOF
[mlflow]
default_permission = NO_PERMISSIONS
database_uri = ${MLFLOW_AUTH_DATABASE_URI:-sqlite:///$HOME/mlflow/basic_auth.db}
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
      export MLFLOW_AUTH_CONFIG_PATH="$HOME/mlflow/basic_auth.ini"
      args+=(--app-name basic-auth)
    else
      echo "[head_mlflow] no MLFLOW_AUTH_ADMIN_PASSWORD in $secrets/mlflow-server: the server takes no login" \
        "(anyone who reaches port $port may read and write); scripts/cluster_secrets.sh sets one"
    fi
    case "$MLFLOW_BACKEND_STORE_URI" in
      sqlite:*) echo "[head_mlflow] runs in ${MLFLOW_BACKEND_STORE_URI#sqlite://}: lost at \`ray down\`;" \
        "set MLFLOW_BACKEND_STORE_URI (PostgreSQL) in $secrets/mlflow-server to keep them" ;;
    esac
    setsid nohup mlflow server "${args[@]}" > "$log" 2>&1 < /dev/null &
    echo $! > "$pidfile"
  fi
fi

# /health answers without a login in the basic-auth app too. The first start creates the database (~15 s).
for _ in $(seq 90); do
  python -c "import sys, urllib.request as u; u.urlopen(sys.argv[1] + '/health', timeout=2)" "$url" 2>/dev/null && exit 0
  sleep 2
done
echo "[head_mlflow] MLflow at $url did not answer in 180 s" >&2
[ -f "$log" ] && tail -20 "$log" >&2
exit 1
