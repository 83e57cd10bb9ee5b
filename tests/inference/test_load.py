"""tfjax.inference.load: a GPT workdir (the tiny trained run), HF GPT-2, GPT-1, BERT and ViT
directories (the goldens, with vocabulary files), hand-made BERT, Transformer and ViT workdirs,
and the clear errors."""

import dataclasses
import functools
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tfjax.data.tokenizers.bert import WordPieceTokenizer
from tfjax.data.tokenizers.gpt2 import GPT2Tokenizer
from tfjax.data.tokenizers.openai_gpt import OpenAIGPTTokenizer
from tfjax.data.tokenizers.sentencepiece import SentencePieceTokenizer
from tfjax.hub import openai_gpt
from tfjax.inference import load
from tfjax.models.bert import BertConfig, BertForPreTraining
from tfjax.models.gpt import GPT, GPTConfig
from tfjax.models.transformer import Transformer, TransformerConfig
from tfjax.models.vit import ViT, ViTConfig, ViTModel
from tfjax.nn import lora
from tfjax.training import checkpoint

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
ATOL = 1e-4  # as the hub parity tests: float32 reduction order only


def assert_trees_equal(a, b) -> None:
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def make_workdir(root: Path, task: str, config, params_by_step: dict[int, dict]) -> Path:
  """A training workdir as the trainer leaves it: config.json and one checkpoint per step."""
  root.mkdir(parents=True)
  (root / "config.json").write_text(
    json.dumps({"task": task, "model": dataclasses.asdict(config), "train": {}})
  )
  manager = checkpoint.checkpoint_manager(str(root), max_to_keep=5)
  for step, params in params_by_step.items():
    checkpoint.save(manager, step, {"params": params, "step": step})
  manager.wait_until_finished()
  manager.close()
  return root


def write_wordpiece_vocab(directory: Path, size: int) -> None:
  letters = list("abcdefghijklmnopqrstuvwxyz")
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{c}" for c in letters)]
  vocab += [f"word{i}" for i in range(size - len(vocab))]
  (directory / "vocab.txt").write_text("".join(f"{t}\n" for t in vocab))


# --- GPT -----------------------------------------------------------------------------------------


def test_a_gpt_workdir_loads_its_config_latest_checkpoint_and_tokenizer(trained_run):
  workdir = trained_run.workdir
  config, params, tokenizer = load.load(workdir, "gpt")
  saved = json.loads((workdir / "config.json").read_text())
  assert config == GPTConfig.from_config(saved["model"])
  abstract = jax.eval_shape(
    lambda: GPT(config).init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
  )
  assert_trees_equal(params, checkpoint.restore_params(str(workdir), abstract))
  assert isinstance(tokenizer, SentencePieceTokenizer)
  assert tokenizer.sha256 == SentencePieceTokenizer.load(workdir / "tokenizer.model").sha256
  assert load.load(workdir, "gpt", tokenizer=False).tokenizer is None


def gpt2_dir(tmp_path: Path) -> Path:
  """The golden GPT-2 (vocab 64, EOS 63) with a byte-level vocab.json of 64 tokens."""
  out = tmp_path / "gpt2"
  shutil.copytree(GOLDEN / "gpt2_tiny", out)
  tokens = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") + ["Ġ"]
  vocab = {t: i for i, t in enumerate(tokens)} | {"<|endoftext|>": 63}
  (out / "vocab.json").write_text(json.dumps(vocab))
  (out / "merges.txt").write_text("#version: 0.2\n")
  return out


def test_an_hf_gpt2_directory_loads_with_its_vocabulary(tmp_path):
  config, params, tokenizer = load.load(gpt2_dir(tmp_path), "gpt")
  golden = np.load(GOLDEN / "gpt2_tiny" / "logits.npz")
  logits = GPT(config).apply({"params": params}, jnp.asarray(golden["input_ids"]))
  np.testing.assert_allclose(logits, golden["logits"], rtol=0, atol=ATOL)
  assert isinstance(tokenizer, GPT2Tokenizer) and tokenizer.eos_id == 63
  assert tokenizer.decode(tokenizer.encode("ab cd")) == "ab cd"


def gpt1_dir(tmp_path: Path, source: str = "openai_gpt_tiny") -> Path:
  """A GPT-1 golden (vocab 100) with a GPT-1 vocab.json of 55 tokens: "<unk>", each letter
  inside a word and ending one ("a</w>"), and the merges t h -> th, th e</w> -> the</w>."""
  out = tmp_path / "gpt1"
  shutil.copytree(GOLDEN / source, out)
  letters = list("abcdefghijklmnopqrstuvwxyz")
  tokens = ["<unk>", *letters, *(f"{c}</w>" for c in letters), "th", "the</w>"]
  (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
  (out / "merges.txt").write_text("#version: 0.2\nt h\nth e</w>\n")
  return out


def test_an_hf_gpt1_directory_loads_with_its_vocabulary(tmp_path):
  config, params, tokenizer = load.load(gpt1_dir(tmp_path), "gpt")
  assert (config.pre_norm, config.activation) == (False, "gelu_tanh")  # GPT-1, not GPT-2
  golden = np.load(GOLDEN / "openai_gpt_tiny" / "outputs.npz")
  logits = GPT(config).apply({"params": params}, jnp.asarray(golden["input_ids"]))
  np.testing.assert_allclose(logits, golden["logits"], rtol=0, atol=ATOL)
  assert isinstance(tokenizer, OpenAIGPTTokenizer) and tokenizer.unk_id == 0
  assert tokenizer.encode("The cat!") == [54, 3, 1, 46, 0]  # the</w> c a t</w> <unk>
  assert tokenizer.decode(tokenizer.encode("The cat")) == "the cat"
  assert isinstance(load.load_tokenizer(gpt1_dir(tmp_path / "t"), "gpt"), OpenAIGPTTokenizer)
  assert load.read_config(gpt1_dir(tmp_path / "again"), "gpt") == ("hf", config)


def test_an_hf_gpt1_double_heads_directory_loads_its_lm():
  hf_dir = GOLDEN / "openai_gpt_double_heads_tiny"
  config, params, tokenizer = load.load(hf_dir, "gpt", tokenizer=False)
  assert tokenizer is None
  assert_trees_equal(params, openai_gpt.load_openai_gpt(hf_dir)[1]["gpt"])
  golden = np.load(hf_dir / "outputs.npz")
  input_ids = golden["input_ids"].reshape(-1, golden["input_ids"].shape[-1])  # [b * choices, t]
  logits = GPT(config).apply({"params": params}, jnp.asarray(input_ids))
  np.testing.assert_allclose(logits, golden["logits"].reshape(logits.shape), rtol=0, atol=ATOL)


def test_hf_gpt_errors_are_one_clear_line(tmp_path):
  other = tmp_path / "neo"
  shutil.copytree(GOLDEN / "openai_gpt_tiny", other)
  (other / "config.json").write_text(json.dumps({"model_type": "gpt_neo"}))
  with pytest.raises(ValueError, match="model_type='gpt_neo'; tfjax's GPT imports HF") as e:
    load.load(other, "gpt")
  assert "'gpt2' (GPT-2) and 'openai-gpt' (GPT-1)" in str(e.value) and "\n" not in str(e.value)
  big_vocab = tmp_path / "big_vocab"
  shutil.copytree(GOLDEN / "openai_gpt_tiny", big_vocab)
  for name in ("vocab.json", "merges.txt"):  # the tokenizer golden's 300 tokens
    shutil.copyfile(GOLDEN / "openai_gpt_tokenizer" / name, big_vocab / name)
  with pytest.raises(ValueError, match="has 300 tokens but the model's vocab_size is 100"):
    load.load(big_vocab, "gpt")
  with pytest.raises(FileNotFoundError, match="no vocab.json or merges.txt; an HF OpenAI GPT"):
    load.load(GOLDEN / "openai_gpt_tiny", "gpt")


# --- BERT ----------------------------------------------------------------------------------------


def test_an_hf_bert_directory_loads_its_heads_or_its_encoder(tmp_path):
  hf_dir = tmp_path / "bert"
  shutil.copytree(GOLDEN / "bert_tiny", hf_dir)
  write_wordpiece_vocab(hf_dir, 100)
  config, params, tokenizer = load.load(hf_dir, "bert")
  golden = np.load(GOLDEN / "bert_tiny" / "outputs.npz")
  inputs = [jnp.asarray(golden[k]) for k in ("input_ids", "token_type_ids", "attention_mask")]
  mlm_logits, nsp_logits = BertForPreTraining(config).apply({"params": params}, *inputs)
  np.testing.assert_allclose(mlm_logits, golden["mlm_logits"], rtol=0, atol=ATOL)
  np.testing.assert_allclose(nsp_logits, golden["nsp_logits"], rtol=0, atol=ATOL)
  assert isinstance(tokenizer, WordPieceTokenizer) and tokenizer.vocab_size == 100
  assert load.read_config(hf_dir, "bert") == ("hf", config)
  assert_trees_equal(load.load(hf_dir, "bert", head="model").params, params["bert"])


BERT = BertConfig(vocab_size=100, max_len=16, num_layers=1, num_heads=2, d_model=16, d_ff=32)


@functools.cache
def bert_params(seed: int) -> dict:
  init = jax.jit(BertForPreTraining(BERT).init)  # jitted: faster than eagerly
  return init(jax.random.key(seed), jnp.zeros((1, 4), jnp.int32))["params"]


def test_a_bert_pretraining_workdir_loads_the_latest_step_or_its_encoder(tmp_path):
  workdir = make_workdir(
    tmp_path / "bert", "bert_pretraining", BERT, {4: bert_params(0), 8: bert_params(1)}
  )
  write_wordpiece_vocab(workdir, BERT.vocab_size)
  config, params, tokenizer = load.load(workdir, "bert")
  assert config == BERT
  assert_trees_equal(params, bert_params(1))  # step 8, the latest
  assert isinstance(tokenizer, WordPieceTokenizer) and tokenizer.vocab_size == 100
  assert_trees_equal(load.load(workdir, "bert", head="model").params, bert_params(1)["bert"])
  assert load.read_config(workdir, "bert") == ("workdir", BERT)


# --- the Transformer -----------------------------------------------------------------------------

TRANSFORMER = TransformerConfig(
  vocab_size=512, max_len=16, num_layers=1, num_heads=2, d_model=16, d_ff=32
)


def transformer_params(seed: int) -> dict:
  tokens = jnp.zeros((1, 4), jnp.int32)
  return jax.jit(Transformer(TRANSFORMER).init)(jax.random.key(seed), tokens, tokens)["params"]


def test_a_transformer_workdir_loads_the_latest_or_the_mean_of_the_last_checkpoints(
  tmp_path, trained_run
):
  steps = {2: transformer_params(0), 4: transformer_params(1), 6: transformer_params(2)}
  workdir = make_workdir(tmp_path / "transformer", "translation", TRANSFORMER, steps)
  shutil.copyfile(trained_run.workdir / "tokenizer.model", workdir / "tokenizer.model")
  config, params, tokenizer = load.load(workdir, "transformer")
  assert config == TRANSFORMER
  assert_trees_equal(params, steps[6])
  assert isinstance(tokenizer, SentencePieceTokenizer) and tokenizer.vocab_size == 512
  averaged = load.load(workdir, "transformer", average_last=2, tokenizer=False).params
  mean = jax.tree.map(lambda a, b: (a + b) / 2, steps[4], steps[6])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), averaged, mean)


# --- ViT -----------------------------------------------------------------------------------------


def test_an_hf_vit_classifier_loads_the_params_of_vit_and_no_tokenizer():
  hf_dir = GOLDEN / "vit_tiny"
  config, params, tokenizer = load.load(hf_dir, "vit")
  assert isinstance(config, ViTConfig) and tokenizer is None  # an image model has none
  assert load.load(hf_dir, "vit", tokenizer=False).tokenizer is None
  assert set(params) == {"vit", "classifier"} and config.num_classes == 5
  golden = np.load(hf_dir / "outputs.npz")
  logits = ViT(config).apply({"params": params}, jnp.asarray(golden["pixel_values_nhwc"]))
  np.testing.assert_allclose(logits, golden["logits"], rtol=0, atol=ATOL)
  assert load.read_config(hf_dir, "vit") == ("hf", config)


def test_an_hf_vit_model_loads_the_body_with_its_pooler():
  hf_dir = GOLDEN / "vit_tiny_model"
  config, params, _ = load.load(hf_dir, "vit", tokenizer=False)
  assert (config.num_classes, config.pre_logits) == (0, True) and "vit" not in params
  golden = np.load(hf_dir / "outputs.npz")
  out = ViTModel(config).apply({"params": params}, jnp.asarray(golden["pixel_values_nhwc"]))
  np.testing.assert_allclose(out.pooled, golden["pooler_output"], rtol=0, atol=ATOL)
  assert load.read_config(hf_dir, "vit") == ("hf", config)  # from architectures: ViTModel


VIT = ViTConfig(
  image_size=8, patch_size=4, num_classes=3, num_layers=1, num_heads=2, d_model=8, d_ff=16
)


def test_a_vit_workdir_restores_the_params_of_vit_on_images(tmp_path):
  images = jnp.zeros((1, 8, 8, 3))
  params = jax.jit(ViT(VIT).init)(jax.random.key(0), images)["params"]
  workdir = make_workdir(tmp_path / "vit", "image_classification", VIT, {3: params})
  config, restored, tokenizer = load.load(workdir, "vit")
  assert config == VIT and tokenizer is None
  assert_trees_equal(restored, params)


def test_a_lora_vit_workdir_loads_as_the_model_with_its_adapters_merged(tmp_path):
  adapters = lora.LoRA(rank=2, alpha=4.0, mlp=True)
  images = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8, 3)), jnp.float32)
  adapted = ViT(VIT.replace(lora=adapters))
  rng = np.random.default_rng(1)  # trained: every adapter and the head away from their init
  params = jax.tree.map(
    lambda x: jnp.asarray(rng.normal(0, 0.5, x.shape), x.dtype),
    jax.jit(adapted.init)(jax.random.key(0), images)["params"],
  )
  workdir = make_workdir(tmp_path / "vit", "image_classification", VIT, {3: params})
  saved = json.loads((workdir / "config.json").read_text())
  saved["lora"] = {"rank": 2, "alpha": 4.0, "mlp": True}  # as config.json of a LoRA run
  (workdir / "config.json").write_text(json.dumps(saved))
  config, merged, _ = load.load(workdir, "vit")
  assert config == VIT  # an ordinary ViT
  assert_trees_equal(
    jax.tree.map(np.shape, merged), jax.tree.map(np.shape, lora.base_params(params))
  )
  np.testing.assert_allclose(
    ViT(config).apply({"params": merged}, images),
    adapted.apply({"params": params}, images),
    rtol=1e-5,
    atol=1e-5,
  )
  with pytest.raises(ValueError, match=r"trained LoRA adapters; average_last=2 would average"):
    load.load(workdir, "vit", average_last=2)


def write_image_workdir(root: Path, **saved) -> Path:
  """A workdir's config.json alone, as an image-classification run writes it."""
  root.mkdir()
  config = {"task": "image_classification", "model": dataclasses.asdict(VIT), **saved}
  (root / "config.json").write_text(json.dumps(config))
  return root


def test_vit_errors_are_one_clear_line(tmp_path):
  cnn = write_image_workdir(tmp_path / "cnn", architecture="cnn")
  with pytest.raises(ValueError, match="architecture 'cnn', not a ViT image-classification") as e:
    load.load(cnn, "vit")
  assert "configs/vit_tiny.py) or an HF ViT directory" in str(e.value) and "\n" not in str(e.value)
  untrained = write_image_workdir(tmp_path / "vit")  # no "architecture": a ViT run
  assert load.read_config(untrained, "vit") == ("workdir", VIT)
  with pytest.raises(FileNotFoundError, match=r"no checkpoint under .*/checkpoints; train first"):
    load.load(untrained, "vit")
  with pytest.raises(ValueError, match="head='model' is for BERT; a vit model has one head"):
    load.load(GOLDEN / "vit_tiny", "vit", head="model")
  with pytest.raises(ValueError, match="model_type='bert'; tfjax imports only ViT"):
    load.load(GOLDEN / "bert_tiny", "vit")
  with pytest.raises(ValueError, match="workdir of task 'image_classification', not a BERT"):
    load.load(untrained, "bert")


# --- clear errors --------------------------------------------------------------------------------


def test_a_missing_directory_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"nowhere' does not exist; give a tfjax pre"):
    load.load(tmp_path / "nowhere", "bert")
  with pytest.raises(FileNotFoundError, match="train a model in it first"):
    load.load(tmp_path, "transformer")


def test_a_workdir_without_a_checkpoint_is_a_clear_error(tmp_path):
  workdir = tmp_path / "w"
  workdir.mkdir()
  (workdir / "config.json").write_text(
    json.dumps({"task": "translation", "model": dataclasses.asdict(TRANSFORMER)})
  )
  with pytest.raises(FileNotFoundError, match=r"no checkpoint under .*/checkpoints; train first"):
    load.load(workdir, "transformer")


def test_a_prompt_response_workdir_has_its_added_tokens_in_the_vocabulary(tmp_path):
  """Its model section keeps the pre-trained vocab_size; the checkpoint's table also holds the
  separator (and an added EOS) after it, as added_tokens.json lists them."""
  workdir = tmp_path / "w"
  workdir.mkdir()
  config = GPTConfig(vocab_size=300, max_len=16, num_layers=1, num_heads=2, d_model=8, d_ff=16)
  model = dataclasses.asdict(config)
  (workdir / "config.json").write_text(json.dumps({"task": "prompt_response", "model": model}))
  with pytest.raises(FileNotFoundError, match=r"has no added_tokens.json \(the ids of its sep"):
    load.read_config(workdir, "prompt_response")
  added = {"<summarize>": 300, "<eos>": 301, "eos_id": 301}
  (workdir / "added_tokens.json").write_text(json.dumps(added))
  expected = ("workdir", config.replace(vocab_size=302))
  assert load.read_config(workdir, "prompt_response") == expected
  assert load.workdir_task(workdir) == "prompt_response" and load.workdir_task(tmp_path) is None
  with pytest.raises(ValueError, match="workdir of task 'prompt_response', not a GPT language"):
    load.read_config(workdir, "gpt")


def test_a_config_of_another_family_is_a_clear_error(tmp_path, trained_run):
  with pytest.raises(ValueError, match=r"workdir of task 'lm', not a BERT pre-training run; give"):
    load.read_config(trained_run.workdir, "bert")
  with pytest.raises(ValueError, match="workdir of task 'lm', not a Transformer translation run"):
    load.load(trained_run.workdir, "transformer")
  with pytest.raises(ValueError, match="model_type='bert'"):
    load.load(GOLDEN / "bert_tiny", "gpt")
  with pytest.raises(ValueError, match="is not a tfjax workdir"):
    load.load(GOLDEN / "bert_tiny", "transformer")
  with pytest.raises(ValueError, match=r"family='t5' is unknown; choose one of \['bert', 'gpt'"):
    load.load(trained_run.workdir, "t5")


def test_options_that_do_not_apply_are_clear_errors(tmp_path, trained_run):
  with pytest.raises(ValueError, match="head='model' is for BERT; a gpt model has one head"):
    load.load(trained_run.workdir, "gpt", head="model")
  with pytest.raises(ValueError, match="head='model' is for BERT"):
    load.load(gpt2_dir(tmp_path), "gpt", head="model")
  workdir = make_workdir(tmp_path / "w", "bert_pretraining", BERT, {1: bert_params(0)})
  with pytest.raises(ValueError, match="head='nsp': a BERT pre-training workdir holds"):
    load.load(workdir, "bert", head="nsp")
  with pytest.raises(ValueError, match="average_last=2 is for workdirs"):
    load.load(GOLDEN / "bert_tiny", "bert", average_last=2)
