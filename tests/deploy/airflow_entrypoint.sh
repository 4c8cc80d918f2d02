#!/usr/bin/env bash
# What the apache/airflow image's /entrypoint does for docker-compose.airflow.yml, without the image:
# migrate Airflow's metadata when _AIRFLOW_DB_MIGRATE=true (airflow-init), then run the command as
# the image does: `bash`/`sh`/`python` commands as they are, anything else as an `airflow` sub-command.
# (The image also creates the FAB admin user for _AIRFLOW_WWW_USER_CREATE; the test's api-server uses
# Airflow's simple auth manager, which has no users to create.)
set -euo pipefail
if [[ "${_AIRFLOW_DB_MIGRATE:-}" == "true" ]]; then
  airflow db migrate
fi
case "${1:-}" in
  bash|sh|python) exec "$@" ;;
  *) exec airflow "$@" ;;
esac
