r"""Trains a GPT language model; resumes from the latest checkpoint in --workdir.

python -m train.gpt --config=configs/gpt_tiny.py --workdir=workdir/gpt_tiny
python -m train.gpt --config=configs/gpt_tiny.py --workdir=/tmp/w --config.train.num_steps=50
"""

from train.cli import run_trainer

if __name__ == "__main__":
  run_trainer()
