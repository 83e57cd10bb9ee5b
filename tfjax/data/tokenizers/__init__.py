"""Tokenizers behind one interface (base.Tokenizer): SentencePiece BPE (sentencepiece.py), BERT's
WordPiece and SentencePiece-with-BERT-specials (bert.py), GPT-2's byte-level BPE (gpt2.py),
GPT-1's lowercased BPE with end-of-word markers (openai_gpt.py)."""
