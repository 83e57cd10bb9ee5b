#!/usr/bin/env bash
# The tests: install what they need, then pytest (extra arguments go to pytest).
EXTRAS="test,corpora" source "$(dirname "$0")/setup_env.sh"
exec python -m pytest "$@"
