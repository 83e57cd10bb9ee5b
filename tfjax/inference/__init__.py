"""Inference: GPT sampling, greedy and beam search over a step function, sequence-to-sequence
translation, BERT fill-mask and features, ViT attention views, and loading a trained run or an
HF directory."""
