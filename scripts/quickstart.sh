#!/usr/bin/env bash
# The main job: install, prepare the Wikipedia corpus, train gpt_tiny on the CPU, show samples.
# Extra arguments go to train/train.py, e.g. --config.train.num_steps=100.
EXTRAS="corpora" source "$(dirname "$0")/setup_env.sh"
exec python -m train.train --config=configs/gpt_tiny.py --workdir="${WORKDIR:-workdir/gpt_tiny}" "$@"
