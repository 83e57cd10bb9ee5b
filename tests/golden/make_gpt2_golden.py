"""Write the GPT-2 parity golden: a tiny random HF `GPT2LMHeadModel` and its logits.

The reference is the PyTorch model of `transformers` (5.x has no Flax classes).
Tests read only the files this script writes and never need torch. Regenerate with

  pip install -e .[parity]        # torch==2.13.0 (CPU wheel) + transformers
  python tests/golden/make_gpt2_golden.py

Outputs, in tests/golden/gpt2_tiny/:
  config.json, model.safetensors   `save_pretrained(..., safe_serialization=True)`; the LM head
                                   is tied to `wte`, so the file holds no `lm_head.weight`.
  logits.npz                       `input_ids` int32 [2, 12] and `logits` float32 [2, 12, 64]
                                   from one eval-mode forward, no attention mask, eager
                                   attention (torch's SDPA path differs by up to 1.4e-6:
                                   compare with atol around 1e-5, not bit for bit).

Biases and LayerNorm gains/biases are perturbed away from their init values (0 and 1), so a
weight import that drops, swaps or transposes one of them changes the logits. Weights are drawn
with initializer_range=0.2, not GPT-2's 0.02: at 0.02 the attention is nearly uniform and the
logits are ~0.1, so a missing 1/sqrt(d_k) moved them by only 1e-4 and a permuted head split by
9e-5 (below a loose test tolerance); at 0.2 both move them by more than 1 (measured).
"""

from pathlib import Path

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

OUT_DIR = Path(__file__).resolve().parent / "gpt2_tiny"
SEED = 0
BATCH, SEQ = 2, 12
PERTURB_SCALE = 0.1


def make_config() -> GPT2Config:
  return GPT2Config(
    vocab_size=64,
    n_positions=32,
    n_embd=32,
    n_layer=2,
    n_head=4,
    n_inner=None,  # 4 * n_embd = 128
    activation_function="gelu_new",
    layer_norm_epsilon=1e-5,
    initializer_range=0.2,  # see the module docstring
    tie_word_embeddings=True,
    bos_token_id=63,
    eos_token_id=63,
    attn_implementation="eager",
  )


def perturb_biases_and_norms(model: GPT2LMHeadModel, scale: float) -> list[str]:
  """Add N(0, scale) noise to every bias and every LayerNorm weight; returns the names."""
  touched = []
  with torch.no_grad():
    for name, param in model.named_parameters():
      is_norm = ".ln_" in name or name.startswith("transformer.ln_f")
      if name.endswith(".bias") or is_norm:
        param.add_(scale * torch.randn_like(param))
        touched.append(name)
  return touched


def main() -> None:
  torch.manual_seed(SEED)
  model = GPT2LMHeadModel(make_config())
  touched = perturb_biases_and_norms(model, PERTURB_SCALE)
  assert any(n.endswith("ln_1.weight") for n in touched), touched
  assert any(n.endswith("c_attn.bias") for n in touched), touched
  model.eval()

  input_ids = np.random.default_rng(SEED).integers(0, 64, size=(BATCH, SEQ)).astype(np.int32)
  with torch.no_grad():
    logits = model(torch.from_numpy(input_ids).long()).logits.float().numpy()
  assert logits.shape == (BATCH, SEQ, 64), logits.shape

  OUT_DIR.mkdir(parents=True, exist_ok=True)
  model.save_pretrained(OUT_DIR, safe_serialization=True)
  np.savez(OUT_DIR / "logits.npz", input_ids=input_ids, logits=logits.astype(np.float32))

  # The files alone must reproduce the logits (tied head, nothing lost in serialisation).
  reloaded = GPT2LMHeadModel.from_pretrained(OUT_DIR, attn_implementation="eager").eval()
  with torch.no_grad():
    again = reloaded(torch.from_numpy(input_ids).long()).logits.numpy()
  np.testing.assert_array_equal(again, logits)
  n_params = sum(p.numel() for p in model.parameters())
  print(f"wrote {OUT_DIR} ({n_params:,} parameters; perturbed {len(touched)} tensors)")


if __name__ == "__main__":
  main()
