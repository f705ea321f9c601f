#!/usr/bin/env bash
# An MLflow tracking server for jobs on many machines, behind MLflow's basic-auth app: a request
# without the admin's (or another user's) credentials is refused (401), so nobody on the network
# reads or deletes runs. Credentials come from the environment, never from a file in the repo:
#
#   MLFLOW_AUTH_ADMIN_USERNAME=... MLFLOW_AUTH_ADMIN_PASSWORD=... MLFLOW_FLASK_SERVER_SECRET_KEY=... \
#       bash scripts/mlflow_server.sh DIR [HOST] [PORT]
#
# DIR holds the runs (mlflow.db), the artifacts (mlartifacts/) and the users (basic_auth.db).
# Jobs log with MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD set (MLflow's client reads
# them). The admin is created on the first start; its password is changed with MLflow's
# update-password API, not by restarting with another one. Needs `pip install 'mlflow[auth]'`
# (Flask-WTF; in this project's `cluster` and `dev` extras). MLFLOW overrides the command
# (e.g. MLFLOW=".venv/bin/python -m mlflow").
set -euo pipefail
dir=${1:?usage: scripts/mlflow_server.sh DIR [HOST] [PORT]}
host=${2:-0.0.0.0}
port=${3:-5000}
: "${MLFLOW_AUTH_ADMIN_USERNAME:?set MLFLOW_AUTH_ADMIN_USERNAME (the admin user the server creates)}"
: "${MLFLOW_AUTH_ADMIN_PASSWORD:?set MLFLOW_AUTH_ADMIN_PASSWORD}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set MLFLOW_FLASK_SERVER_SECRET_KEY (signs the CSRF tokens of the UI)}"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
# MLflow's own config file, less its defaults that do not suit a shared server: users live beside
# the runs (not in the working directory), a new user sees nothing until granted, and a checked
# password is trusted for 60 s (without it every request of every job pays a PBKDF2 hash; a changed
# password then takes up to 60 s to reach every server worker).
cat > "$dir/basic_auth.ini" <<INI
[mlflow]
default_permission = NO_PERMISSIONS
database_uri = sqlite:///$dir/basic_auth.db
admin_username = $MLFLOW_AUTH_ADMIN_USERNAME
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = 60
INI
export MLFLOW_AUTH_CONFIG_PATH="$dir/basic_auth.ini"
# shellcheck disable=SC2086  # MLFLOW may be a command with arguments
exec ${MLFLOW:-mlflow} server --app-name basic-auth --host "$host" --port "$port" \
    --backend-store-uri "sqlite:///$dir/mlflow.db" --artifacts-destination "$dir/mlartifacts"
