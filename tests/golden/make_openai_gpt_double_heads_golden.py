"""Write the GPT-1 multiple-choice parity golden: a tiny random HF `OpenAIGPTDoubleHeadsModel`
(GPT-1's fine-tuning model, Radford et al. 2018 §3.3: LM head + a linear score per choice) and
its outputs. The model is the one of make_openai_gpt_golden.py (same config and redraw) with
the multiple-choice head on top. Tests read only the files this script writes and never need
torch. Regenerate with

  pip install -e .[parity]        # torch==2.13.0 (CPU wheel) + transformers
  python tests/golden/make_openai_gpt_double_heads_golden.py

Outputs, in tests/golden/openai_gpt_double_heads_tiny/:
  config.json, model.safetensors   `save_pretrained(..., safe_serialization=True)`. transformers
                                   5 ties this class the other way round from the LM head model
                                   (`_tied_weights_keys` = {tokens_embed: lm_head}), so the file
                                   holds `lm_head.weight` and no `transformer.tokens_embed.weight`.
                                   The head is `multiple_choice_head.summary` (nn.Linear(32, 1));
                                   summary_type="cls_index", no activation, first dropout 0.1.
  outputs.npz                      `input_ids` int32 [2, 3, 10] (2 examples of 3 choices),
                                   `mc_token_ids` int32 [2, 3] (the position read per choice,
                                   varied: first, middle and last), `mc_logits` float32 [2, 3]
                                   and `logits` float32 [2, 3, 10, 100] (the LM head), from one
                                   eval-mode forward, no attention mask, eager attention.
"""

from pathlib import Path

import numpy as np
import torch
from make_openai_gpt_golden import SEED, STD, VOCAB, make_config, redraw_parameters
from transformers import OpenAIGPTDoubleHeadsModel

OUT_DIR = Path(__file__).resolve().parent / "openai_gpt_double_heads_tiny"
BATCH, CHOICES, SEQ = 2, 3, 10
MC_TOKEN_IDS = [[9, 4, 0], [2, 9, 6]]


def main() -> None:
  torch.manual_seed(SEED)
  model = OpenAIGPTDoubleHeadsModel(make_config())
  touched = redraw_parameters(model, STD)
  assert "multiple_choice_head.summary.weight" in touched, touched
  assert model.lm_head.weight is model.transformer.tokens_embed.weight  # tied head
  summary = model.multiple_choice_head
  assert tuple(summary.summary.weight.shape) == (1, model.config.n_embd)
  assert isinstance(summary.activation, torch.nn.Identity), summary.activation
  model.eval()

  rng = np.random.default_rng(SEED)
  input_ids = rng.integers(0, VOCAB, size=(BATCH, CHOICES, SEQ)).astype(np.int32)
  mc_token_ids = np.asarray(MC_TOKEN_IDS, np.int32)
  inputs = {
    "input_ids": torch.from_numpy(input_ids).long(),
    "mc_token_ids": torch.from_numpy(mc_token_ids).long(),
  }
  with torch.no_grad():
    out = model(**inputs)
  logits, mc_logits = out.logits.float().numpy(), out.mc_logits.float().numpy()
  assert logits.shape == (BATCH, CHOICES, SEQ, VOCAB), logits.shape
  assert mc_logits.shape == (BATCH, CHOICES), mc_logits.shape

  OUT_DIR.mkdir(parents=True, exist_ok=True)
  model.save_pretrained(OUT_DIR, safe_serialization=True)
  (OUT_DIR / "model.safetensors").chmod(0o644)  # transformers writes it owner-only
  np.savez(
    OUT_DIR / "outputs.npz",
    input_ids=input_ids,
    mc_token_ids=mc_token_ids,
    mc_logits=mc_logits.astype(np.float32),
    logits=logits.astype(np.float32),
  )

  # The files alone must reproduce the outputs (tied head, nothing lost in serialisation); the
  # reloaded head's matmul may round differently in the last bit (measured: 6e-8 on one score).
  reloaded = OpenAIGPTDoubleHeadsModel.from_pretrained(OUT_DIR, attn_implementation="eager")
  with torch.no_grad():
    again = reloaded.eval()(**inputs)
  np.testing.assert_array_equal(again.logits.numpy(), logits)
  np.testing.assert_allclose(again.mc_logits.numpy(), mc_logits, rtol=0, atol=1e-6)
  n_params = sum(p.numel() for p in model.parameters())
  print(f"wrote {OUT_DIR} ({n_params:,} parameters; redrew {len(touched)} tensors)")


if __name__ == "__main__":
  main()
