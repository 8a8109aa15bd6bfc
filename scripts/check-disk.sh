#!/usr/bin/env bash
# Before `make install`: enough free disk for the virtual environment and for pip's temporary files?
# A full disk otherwise shows up as pip's "[Errno 28] No space left on device" halfway through torch.
# Measured on a fresh clone (2026-11-22): .venv is 3.0 GiB (torch, the LiteRT converter and its JAX,
# Ray, Streamlit), Chromium and PostgreSQL from apt add about 0.6 GiB, and a full `make test` leaves
# about 0.2 GiB under $TMPDIR.
set -euo pipefail
need_gib=5
for where in "${1:-.}" "${TMPDIR:-/tmp}"; do
  mkdir -p "$where"
  free_kib=$(df -Pk "$where" | awk 'NR == 2 {print $4}')
  if [ "$free_kib" -lt $((need_gib * 1024 * 1024)) ]; then
    echo "make install: only $((free_kib / 1024)) MiB free on the disk of $(cd "$where" && pwd);" \
         "the install needs about ${need_gib} GiB: free some space (or point TMPDIR at a larger disk)" >&2
    exit 1
  fi
done
