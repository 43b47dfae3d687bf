#!/usr/bin/env bash
# Create eraflow's work pools on the server at $PREFECT_API_URL (idempotent).
set -euo pipefail
PREFECT=${PREFECT:-prefect}
for pool in cpu-pool gpu-pool; do
  if ! "$PREFECT" work-pool inspect "$pool" >/dev/null 2>&1; then
    "$PREFECT" work-pool create "$pool" --type process
  fi
done
"$PREFECT" work-pool update gpu-pool --concurrency-limit 1
