#!/usr/bin/env bash
# Create eraflow's process work pools and the GPU concurrency limit on the server at
# $PREFECT_API_URL. Idempotent. PREFECT may name the prefect executable (default: prefect).
set -euo pipefail
PREFECT=${PREFECT:-prefect}
for pool in cpu-pool gpu-pool; do
  if ! "$PREFECT" work-pool inspect "$pool" >/dev/null 2>&1; then
    "$PREFECT" work-pool create "$pool" --type process
  fi
done
# One era-features run per GPU at a time (a GPU host runs one gpu-pool worker per GPU).
"$PREFECT" work-pool update gpu-pool --concurrency-limit 1
# GPU tasks inside a run hold a slot of this global limit (tasks/features.py).
"$PREFECT" gcl create gpu --limit 1 >/dev/null 2>&1 || "$PREFECT" gcl update gpu --limit 1
