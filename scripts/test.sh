#!/usr/bin/env bash
# The tests: install what they need, then pytest (extra arguments go to pytest), the tests
# spread over two worker processes by file (pytest-xdist; a module's fixtures, such as the 8-device
# runs, are then computed once; -n 0 runs them in this one).
EXTRAS="test,corpora" source "$(dirname "$0")/setup_env.sh"
exec python -m pytest -n 2 --dist loadfile "$@"
