"""Write the GPT-1 parity golden: a tiny random HF `OpenAIGPTLMHeadModel` and its outputs.

The reference is the PyTorch model of `transformers` (5.x has no Flax classes).
Tests read only the files this script writes and never need torch. Regenerate with

  pip install -e .[parity]        # torch==2.13.0 (CPU wheel) + transformers
  python tests/golden/make_openai_gpt_golden.py

Outputs, in tests/golden/openai_gpt_tiny/:
  config.json, model.safetensors   `save_pretrained(..., safe_serialization=True)`; the LM head
                                   is tied to `tokens_embed`, so the file holds no
                                   `lm_head.weight`. There is no final LayerNorm (GPT-1 is
                                   post-LN: each block does ln_1(x + attn), ln_2(n + mlp)).
  outputs.npz                      `input_ids` int32 [2, 10], `logits` float32 [2, 10, 100] and
                                   `hidden_states` float32 [3, 2, 10, 32] (`output_hidden_states`:
                                   the embeddings, then the output of each of the 2 layers) from
                                   one eval-mode forward, no attention mask, eager attention.

Activation: the config's `afn` defaults to "gelu", and modeling_openai.py's
`ACT_FNS = {"relu": ..., "silu": ..., "gelu": gelu_new, "swish": ...}` maps it to `gelu_new`,
the tanh approximation 0.5*x*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x**3))), not the exact erf GELU.
The causal mask is applied as `w * b + -1e4 * (1 - b)` after scaling by 1/sqrt(d_head)
(a finite -1e4, not -inf).

Every parameter is redrawn so a weight import that drops, swaps or transposes one of them
changes the outputs: weights and biases ~ N(0, 0.2), LayerNorm gains ~ 1 + N(0, 0.2) (a std of
0.02 leaves attention nearly uniform and hides mis-mappings; see make_gpt2_golden.py).
"""

from pathlib import Path

import numpy as np
import torch
from transformers import OpenAIGPTConfig, OpenAIGPTLMHeadModel

OUT_DIR = Path(__file__).resolve().parent / "openai_gpt_tiny"
SEED = 0
BATCH, SEQ = 2, 10
VOCAB, N_EMBD, N_LAYER = 100, 32, 2
STD = 0.2


def make_config() -> OpenAIGPTConfig:
  return OpenAIGPTConfig(
    vocab_size=VOCAB,
    n_positions=16,
    n_embd=N_EMBD,
    n_layer=N_LAYER,
    n_head=4,
    # afn left at its default, "gelu" (-> gelu_new, see the module docstring)
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
    attn_implementation="eager",
  )


def redraw_parameters(model: OpenAIGPTLMHeadModel, std: float) -> list[str]:
  """Redraw every parameter: N(0, std), LayerNorm gains 1 + N(0, std); returns the names."""
  touched = []
  with torch.no_grad():
    for name, param in model.named_parameters():
      is_norm_gain = ".ln_" in name and name.endswith(".weight")
      param.normal_(0.0, std)
      if is_norm_gain:
        param.add_(1.0)
      touched.append(name)
  return touched


def main() -> None:
  torch.manual_seed(SEED)
  model = OpenAIGPTLMHeadModel(make_config())
  assert model.config.afn == "gelu", model.config.afn
  touched = redraw_parameters(model, STD)
  assert any(n.endswith("ln_1.weight") for n in touched), touched
  assert any(n.endswith("c_attn.bias") for n in touched), touched
  assert model.lm_head.weight is model.transformer.tokens_embed.weight  # tied head
  model.eval()

  input_ids = np.random.default_rng(SEED).integers(0, VOCAB, size=(BATCH, SEQ)).astype(np.int32)
  with torch.no_grad():
    out = model(torch.from_numpy(input_ids).long(), output_hidden_states=True)
  logits = out.logits.float().numpy()
  hidden_states = torch.stack(out.hidden_states).float().numpy()
  assert logits.shape == (BATCH, SEQ, VOCAB), logits.shape
  assert hidden_states.shape == (N_LAYER + 1, BATCH, SEQ, N_EMBD), hidden_states.shape

  OUT_DIR.mkdir(parents=True, exist_ok=True)
  model.save_pretrained(OUT_DIR, safe_serialization=True)
  np.savez(
    OUT_DIR / "outputs.npz",
    input_ids=input_ids,
    logits=logits.astype(np.float32),
    hidden_states=hidden_states.astype(np.float32),
  )

  # The files alone must reproduce the outputs (tied head, nothing lost in serialisation).
  reloaded = OpenAIGPTLMHeadModel.from_pretrained(OUT_DIR, attn_implementation="eager").eval()
  with torch.no_grad():
    again = reloaded(torch.from_numpy(input_ids).long(), output_hidden_states=True)
  np.testing.assert_array_equal(again.logits.numpy(), logits)
  np.testing.assert_array_equal(torch.stack(again.hidden_states).numpy(), hidden_states)
  n_params = sum(p.numel() for p in model.parameters())
  print(f"wrote {OUT_DIR} ({n_params:,} parameters; redrew {len(touched)} tensors)")


if __name__ == "__main__":
  main()
