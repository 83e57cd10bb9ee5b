"""Hugging Face checkpoints (config.json + safetensors) <-> tfjax configs and parameters."""
