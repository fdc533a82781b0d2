#!/usr/bin/env bash
# The complexity sweep at convergence (conf/budget/converged.yaml): the plain CNN's 8 sizes and
# the timm models, two seeds each, then the report of both budgets (this one and the recorded
# one-pass members). Resumable: run it again after a stop and only what is unfinished trains,
# a member stopped part-way going on from its last.ckpt. Finished members are kept in
# experiments/complexity_sweep/records (commit them), so a new machine trains only the rest.
#
#   experiments/complexity_sweep/converged.sh          # CPU: two one-thread members at a time
#   experiments/complexity_sweep/converged.sh trainer=gpu hydra/launcher=basic threads=null \
#       data.num_workers=8                             # a GPU machine: one member at a time
#
# AGEFAIR_STUDIES (default outputs/studies) holds the multirun folders; PYTHON is the
# interpreter (experiments/converged_sweeps.sh).
set -euo pipefail
source "$(dirname "$0")/../converged_sweeps.sh"
records=experiments/complexity_sweep/records

sweep complexity_converged_cnn experiment=complexity_sweep budget=converged seed=0,1
sweep complexity_converged_timm experiment=complexity_sweep_timm budget=converged seed=0,1

"$python" -m agefair.report "$studies/complexity_converged_cnn" \
    "$studies/complexity_converged_timm" experiments/complexity_sweep/one_pass/results.csv \
    --study complexity_sweep --out experiments/complexity_sweep
