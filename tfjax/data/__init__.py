"""Datasets, tokenizers and input pipelines. Knows no model."""
