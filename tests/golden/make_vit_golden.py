"""Write the ViT parity goldens: a tiny random HF `ViTForImageClassification`, a separate
`ViTModel` with its pooler, and their outputs on a batch of two random images.

The reference is the PyTorch model of `transformers` (5.x has no Flax classes).
Tests read only the files this script writes and never need torch. Regenerate with

  pip install -e .[parity]        # torch==2.13.0 (CPU wheel) + transformers
  python tests/golden/make_vit_golden.py

Outputs:
  tests/golden/vit_tiny/          `ViTForImageClassification.save_pretrained(...,
                                  safe_serialization=True)`: config.json (model_type "vit",
                                  5 named labels) + model.safetensors ("vit." prefix, no pooler,
                                  then classifier.weight [5, 32] / classifier.bias [5]).
  tests/golden/vit_tiny_model/    a `ViTModel(add_pooling_layer=True)` with other weights (seed
                                  1), saved the same way: no prefix, pooler.dense.* included.
  Both files hold the Hub names (embeddings.*, encoder.layer.{i}.attention.attention.query.*,
  ..., layernorm.*): transformers 5.x renames them in memory (layers.{i}.attention.q_proj.*)
  and back on save. The patch embedding is a conv kernel [32, 3, 8, 8] (OIHW).
  tests/golden/vit_tiny/outputs.npz
    inputs   pixel_values_nhwc float32 [2, 32, 32, 3], N(0, 1) (HF is fed its NCHW transpose)
    outputs  logits [2, 5]; from `model.vit`: last_hidden_state [2, 17, 32] (after the final
             layernorm), hidden_states [3, 2, 17, 32] (embeddings output, then each layer, all
             BEFORE the final layernorm, as HF's output_hidden_states gives them), attentions
             [2, 2, 4, 17, 17] (layer, batch, head, query, key; softmax probabilities)
  tests/golden/vit_tiny_model/outputs.npz
    the same keys for the `ViTModel` on its own images (seed 1), with pooler_output [2, 32]
    (tanh(dense(last_hidden_state[:, 0]))) in place of logits.
  All float32, one eval-mode forward with eager attention, at the config's 32x32 only: HF's
  interpolate_pos_encoding resamples bicubically and tfjax bilinearly (big_vision), so other
  resolutions are not compared.

Every parameter is redrawn (`redraw_parameters`): weights, the conv kernel, cls_token and the
position embeddings from N(0, 0.2), biases from N(0, 0.2), LayerNorm gains from 1 + N(0, 0.2),
so an import that drops, swaps or transposes a tensor, or permutes q/k/v or the heads, changes
the outputs well beyond the tests' tolerance, and the attention is far from uniform.
Measured on vit_tiny (max change of logits / last_hidden_state): a transposed query kernel 2.4,
q and k swapped 1.3, two heads swapped 2.2, no 1/sqrt(d_k) 1.1, the conv kernel's H and W
swapped 5.3, position embeddings shifted by one token 1.4, tanh GELU 5e-4; but layer_norm_eps
1e-6 instead of 1e-12 only 9e-6 (check that from config.json, not the outputs). torch's SDPA
differs from eager by up to 1.1e-6: compare with atol around 1e-5.
"""

from pathlib import Path

import numpy as np
import torch
from transformers import ViTConfig, ViTForImageClassification, ViTModel

GOLDEN = Path(__file__).resolve().parent
OUT_DIR = GOLDEN / "vit_tiny"
MODEL_DIR = GOLDEN / "vit_tiny_model"
SEED, MODEL_SEED = 0, 1
BATCH, IMAGE, PATCH, WIDTH = 2, 32, 8, 32
TOKENS = (IMAGE // PATCH) ** 2 + 1  # 16 patches + [CLS]
LABELS = ("cat", "dog", "bird", "fish", "frog")
STD = 0.2


def make_config() -> ViTConfig:
  return ViTConfig(
    image_size=IMAGE,
    patch_size=PATCH,
    num_channels=3,
    hidden_size=WIDTH,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    hidden_act="gelu",  # exact erf GELU
    layer_norm_eps=1e-12,
    qkv_bias=True,
    initializer_range=STD,
    num_labels=len(LABELS),
    id2label=dict(enumerate(LABELS)),
    label2id={name: i for i, name in enumerate(LABELS)},
    attn_implementation="eager",
  )


def redraw_parameters(model: torch.nn.Module, seed: int) -> list[str]:
  """Draw every parameter anew (see the module docstring); returns the names."""
  gains = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}
  generator = torch.Generator().manual_seed(seed)
  names = []
  with torch.no_grad():
    for name, param in model.named_parameters():
      noise = STD * torch.randn(param.shape, generator=generator)
      param.copy_(1.0 + noise if id(param) in gains else noise)
      names.append(name)
  return names


def make_inputs(seed: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  pixels = rng.standard_normal((BATCH, IMAGE, IMAGE, 3)).astype(np.float32)
  return {"pixel_values_nhwc": pixels}


def run_body(body: ViTModel, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  pixels = torch.from_numpy(inputs["pixel_values_nhwc"]).permute(0, 3, 1, 2).contiguous()
  with torch.no_grad():
    out = body(pixel_values=pixels, output_hidden_states=True, output_attentions=True)
    # hidden_states precede the final layernorm; the last one normalised is the output.
    np.testing.assert_allclose(
      body.layernorm(out.hidden_states[-1]).numpy(), out.last_hidden_state.numpy(), atol=1e-6
    )
    np.testing.assert_array_equal(out.hidden_states[0].numpy(), body.embeddings(pixels).numpy())
  arrays = {
    "last_hidden_state": out.last_hidden_state.numpy(),
    "hidden_states": np.stack([h.numpy() for h in out.hidden_states]),
    "attentions": np.stack([a.numpy() for a in out.attentions]),
  }
  if out.pooler_output is not None:
    arrays["pooler_output"] = out.pooler_output.numpy()
  return arrays


def forward(model: ViTForImageClassification, inputs: dict[str, np.ndarray]) -> dict:
  pixels = torch.from_numpy(inputs["pixel_values_nhwc"]).permute(0, 3, 1, 2).contiguous()
  with torch.no_grad():
    logits = model(pixel_values=pixels).logits.numpy()
  return {"logits": logits, **run_body(model.vit, inputs)}


def check_shapes(outputs: dict[str, np.ndarray]) -> None:
  expected = {
    "logits": (BATCH, len(LABELS)),
    "pooler_output": (BATCH, WIDTH),
    "last_hidden_state": (BATCH, TOKENS, WIDTH),
    "hidden_states": (3, BATCH, TOKENS, WIDTH),
    "attentions": (2, BATCH, 4, TOKENS, TOKENS),
  }
  for name, array in outputs.items():
    assert array.shape == expected[name], (name, array.shape)
  # Far from uniform (1/17 = 0.059) attention, so a wrong scale or head split shows.
  assert outputs["attentions"].max() > 0.5, outputs["attentions"].max()


def save_npz(path: Path, inputs: dict, outputs: dict) -> None:
  np.savez(path, **inputs, **{k: v.astype(np.float32) for k, v in outputs.items()})


def main() -> None:
  model = ViTForImageClassification(make_config())
  names = redraw_parameters(model, SEED)
  assert "vit.embeddings.cls_token" in names and "classifier.bias" in names, names
  model.eval()
  inputs = make_inputs(SEED)
  outputs = forward(model, inputs)
  check_shapes(outputs)

  body = ViTModel(make_config(), add_pooling_layer=True)
  body_names = redraw_parameters(body, MODEL_SEED)
  assert "pooler.dense.weight" in body_names, body_names
  body.eval()
  body_inputs = make_inputs(MODEL_SEED)
  body_outputs = run_body(body, body_inputs)
  check_shapes(body_outputs)

  model.save_pretrained(OUT_DIR, safe_serialization=True)
  body.save_pretrained(MODEL_DIR, safe_serialization=True)
  save_npz(OUT_DIR / "outputs.npz", inputs, outputs)
  save_npz(MODEL_DIR / "outputs.npz", body_inputs, body_outputs)

  # The files alone must reproduce the outputs (nothing lost in serialisation or renaming).
  reloaded = ViTForImageClassification.from_pretrained(OUT_DIR, attn_implementation="eager")
  for name, array in forward(reloaded.eval(), inputs).items():
    np.testing.assert_array_equal(array, outputs[name], err_msg=name)
  reloaded_body = ViTModel.from_pretrained(MODEL_DIR, attn_implementation="eager")
  for name, array in run_body(reloaded_body.eval(), body_inputs).items():
    np.testing.assert_array_equal(array, body_outputs[name], err_msg=name)
  n_params = sum(p.numel() for p in model.parameters())
  n_body = sum(p.numel() for p in body.parameters())
  print(f"wrote {OUT_DIR} ({n_params:,} parameters) and {MODEL_DIR} ({n_body:,})")


if __name__ == "__main__":
  main()
