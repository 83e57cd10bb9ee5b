"""Tokenizers: SentencePiece BPE (sentencepiece.py), BERT's WordPiece (bert.py), GPT-2's BPE
(gpt2.py)."""
