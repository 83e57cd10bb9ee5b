r"""Pre-trains a BERT (MLM + NSP) or fine-tunes one as a classifier, as the config's `task`
says; resumes from the latest checkpoint in --workdir.

python -m train.bert --config=configs/bert_tiny.py --workdir=workdir/bert_tiny
python -m train.bert --config=configs/bert_tiny_topics.py --workdir=workdir/bert_tiny_topics
"""

from train.cli import run_trainer

if __name__ == "__main__":
  run_trainer()
