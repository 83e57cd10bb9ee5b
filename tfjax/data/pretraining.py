"""BERT pre-training examples: masked LM + next sentence prediction (Devlin et al. 2018, §3.1, A.1).

Google's create_pretraining_data.py is the reference. Each split is split into sentences and
tokenized once, cached as `.npy` (memory-mapped later). A document is cut into records: runs of
>= 2 consecutive sentences of about max_seq_len - 3 tokens. Example `i` of a record is drawn from
the seed and `i` alone: sentence A is the record's first sentences, B its next ones (IsNext) or,
with probability 1/2, sentences of another document (NotNext); the pair is truncated to fit, then
15% of its tokens are chosen for prediction (80% -> [MASK], 10% -> a random token, 10% kept).
Index `i + k * num_records` is the same record with a fresh pair and masks, so every epoch is new
and the grain iterator still resumes exactly from its state.
"""

import dataclasses
import pathlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import grain
import numpy as np
from absl import logging

from tfjax.data import cache, pipeline
from tfjax.data.sentences import split_sentences
from tfjax.data.tokenizers import bert as bert_tokenizer
from tfjax.data.tokenizers import sentencepiece as tokenizer_lib

# Bump when the way a split becomes sentences of ids changes.
_CACHE_VERSION = 2  # 2: sentences by tfjax.data.sentences
ENCODE_CHUNK = 256  # documents per encode_batch call


@dataclasses.dataclass(frozen=True, eq=False)
class TokenizedDocuments:
  """Documents as sentences of token ids, in three flat arrays (memory-mapped from the cache).

  Sentence `s` is `tokens[sentence_starts[s]:sentence_starts[s + 1]]`; document `d` is sentences
  `document_starts[d]` to `document_starts[d + 1]`. No sentence and no document is empty.
  """

  tokens: np.ndarray  # int32 [num_tokens]
  sentence_starts: np.ndarray  # int64 [num_sentences + 1]
  document_starts: np.ndarray  # int64 [num_documents + 1]

  @classmethod
  def from_lists(cls, documents: Iterable[Sequence[Sequence[int]]]) -> "TokenizedDocuments":
    """From documents as lists of sentences of ids; empty sentences and documents are dropped."""
    sentence_lengths, document_lengths, chunks = [], [], []
    for document in documents:
      sentences = [np.asarray(s, np.int32) for s in document if len(s)]
      if sentences:
        chunks.extend(sentences)
        sentence_lengths.extend(len(s) for s in sentences)
        document_lengths.append(len(sentences))
    return cls(
      tokens=np.concatenate(chunks) if chunks else np.zeros((0,), np.int32),
      sentence_starts=np.concatenate([[0], np.cumsum(sentence_lengths, dtype=np.int64)]),
      document_starts=np.concatenate([[0], np.cumsum(document_lengths, dtype=np.int64)]),
    )

  @property
  def num_documents(self) -> int:
    return len(self.document_starts) - 1

  @property
  def num_sentences(self) -> int:
    return len(self.sentence_starts) - 1

  def sentences(self, first: int, end: int) -> np.ndarray:
    """Sentences [first, end) end to end, as one int32 array."""
    return np.array(self.tokens[self.sentence_starts[first] : self.sentence_starts[end]], np.int32)


def tokenize_documents(
  tokenizer: bert_tokenizer.BertTokenizer, texts: Iterable[str]
) -> TokenizedDocuments:
  """Splits each text into sentences and encodes them (no special tokens)."""
  texts = iter(texts)

  def documents() -> Iterator[list[list[int]]]:
    while chunk := [split_sentences(t) for _, t in zip(range(ENCODE_CHUNK), texts, strict=False)]:
      ids = iter(tokenizer.encode_batch([s for sentences in chunk for s in sentences]))
      for sentences in chunk:
        yield [next(ids) for _ in sentences]

  return TokenizedDocuments.from_lists(documents())


# --- corpus: tokenizer + cached sentences of each split ---------------------------------------


class PretrainingData:
  """A BERT tokenizer and the tokenized documents of each split of one text dataset (cached)."""

  def __init__(
    self,
    tokenizer: bert_tokenizer.BertTokenizer,
    tokenize_split: Callable[[str], TokenizedDocuments],
  ):
    self.tokenizer = tokenizer
    self._tokenize_split = tokenize_split
    self._documents: dict[str, TokenizedDocuments] = {}

  def documents(self, split: str) -> TokenizedDocuments:
    if split not in self._documents:
      self._documents[split] = self._tokenize_split(split)
    return self._documents[split]


def prepare_pretraining_data(data_config: Any, vocab_size: int) -> PretrainingData:
  """Builds the dataset, makes the tokenizer and tokenizes the train and eval splits (cached).

  `data_config` is `config.data`: name, text_field, train_split, eval_split, tfds_data_dir,
  cache_dir, tokenizer ("sentencepiece": trained on the train split with `vocab_size` pieces;
  "bert-base-uncased": its vocab.txt, installed offline; or a path to a vocab.txt, a
  SentencePiece .model or a directory holding one), lowercase (for a vocab.txt; default True).
  """
  text_field = data_config.text_field
  dataset = pipeline.prepare_dataset(data_config, {"text_field": text_field})
  check_has_text = lambda split: dataset.check_not_empty(
    split, dataset.texts(split, text_field), f"text in field '{text_field}'"
  )
  check_has_text(data_config.train_split)
  tokenizer = _make_tokenizer(data_config, vocab_size, dataset)
  if tokenizer.vocab_size > vocab_size:
    raise ValueError(
      f"the tokenizer has {tokenizer.vocab_size} ids but model.vocab_size={vocab_size}; set "
      f"config.model.vocab_size to at least {tokenizer.vocab_size}"
    )

  def tokenize_split(split: str) -> TokenizedDocuments:
    key = dict(version=_CACHE_VERSION, text_field=text_field, tokenizer_sha256=tokenizer.sha256)
    directory = dataset.split_cache_path("pretraining", split, [text_field], key)
    names = [f.name for f in dataclasses.fields(TokenizedDocuments)]
    if not (directory / "tokens.npy").exists():  # written last: the others are complete
      check_has_text(split)
      start = time.perf_counter()
      documents = tokenize_documents(tokenizer, dataset.texts(split, text_field))
      for field in reversed(names):
        array = getattr(documents, field)
        cache.write_atomically(directory / f"{field}.npy", lambda f, a=array: np.save(f, a))
      logging.info(
        "Tokenized %s split %s: %d documents, %d sentences, %d tokens in %.1fs -> %s",
        dataset.id,
        split,
        documents.num_documents,
        documents.num_sentences,
        documents.tokens.size,
        time.perf_counter() - start,
        directory,
      )
    return TokenizedDocuments(**{f: np.load(directory / f"{f}.npy", mmap_mode="r") for f in names})

  data = PretrainingData(tokenizer, tokenize_split)
  for split in dict.fromkeys((data_config.train_split, data_config.eval_split)):
    data.documents(split)
  return data


def _make_tokenizer(
  data_config: Any, vocab_size: int, dataset: pipeline.PreparedDataset
) -> bert_tokenizer.BertTokenizer:
  choice = str(data_config.get("tokenizer", "sentencepiece"))
  if choice == "sentencepiece":
    split, field = data_config.train_split, data_config.text_field
    sentencepiece = tokenizer_lib.train_or_load_tokenizer(
      dataset.texts(split, field),
      vocab_size=vocab_size,
      cache_dir=dataset.cache_dir / "tokenizers",
      name=f"{dataset.id}-{split}-{field}",
      special_tokens="bert",
    )
    return bert_tokenizer.SentencePieceBertTokenizer(sentencepiece)
  if choice != "bert-base-uncased" and not pathlib.Path(choice).exists():
    raise FileNotFoundError(
      f"data.tokenizer={choice!r} is neither 'sentencepiece', 'bert-base-uncased' nor an "
      "existing vocab.txt, .model file or directory"
    )
  return bert_tokenizer.load_bert_tokenizer(choice, lowercase=data_config.get("lowercase"))


# --- examples -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PretrainingOptions:
  """Shape and sampling of the examples (Google BERT's: 128 or 512, 20 or 80, 0.15, 0.1)."""

  max_seq_len: int = 128
  max_predictions_per_seq: int = 20
  masked_lm_prob: float = 0.15
  short_seq_prob: float = 0.1  # share of examples with a shorter random target length

  def __post_init__(self):
    if self.max_seq_len < 5:
      raise ValueError(
        f"max_seq_len={self.max_seq_len} cannot hold [CLS] A [SEP] B [SEP]; use at least 5"
      )
    if self.max_predictions_per_seq < 1:
      raise ValueError(f"max_predictions_per_seq={self.max_predictions_per_seq} must be >= 1")
    for name in ("masked_lm_prob", "short_seq_prob"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"{name}={getattr(self, name)} must be a probability in [0, 1]")

  @classmethod
  def from_config(cls, data_config: Any) -> "PretrainingOptions":
    names = [f.name for f in dataclasses.fields(cls)]
    return cls(**{n: getattr(data_config, n) for n in names if n in data_config})


def document_records(documents: TokenizedDocuments, max_num_tokens: int) -> np.ndarray:
  """int64 [num_records, 3]: (document, first sentence, end sentence) of runs of >= 2 sentences.

  Consecutive sentences are gathered until they hold `max_num_tokens` (as Google's
  create_instances_from_document does); a last lone sentence joins the run before it.
  Single-sentence documents make no record (they can still be a NotNext B).
  """
  lengths = np.diff(documents.sentence_starts)
  records = []
  for d in range(documents.num_documents):
    first, end = int(documents.document_starts[d]), int(documents.document_starts[d + 1])
    if end - first < 2:
      continue
    start, length = first, 0
    for s in range(first, end):
      length += int(lengths[s])
      if length >= max_num_tokens and s + 1 - start >= 2:
        records.append([d, start, s + 1])
        start, length = s + 1, 0
    if end - start == 1 and records and records[-1][0] == d:
      records[-1][2] = end
    elif end > start:
      records.append([d, start, end])
  return np.array(records, np.int64).reshape(-1, 3)


def truncate_seq_pair(
  tokens_a: np.ndarray, tokens_b: np.ndarray, max_num_tokens: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
  """Google's truncate_seq_pair in closed form: tokens come off the longer side (B on ties) one
  at a time, each from its front or back with probability 1/2, until the pair fits."""
  len_a, len_b = len(tokens_a), len(tokens_b)
  excess = len_a + len_b - max_num_tokens
  if excess <= 0:
    return tokens_a, tokens_b
  first = min(excess, abs(len_a - len_b))  # until both sides are equal
  rest = excess - first  # then alternately, B first
  cut_a = (first if len_a > len_b else 0) + rest // 2
  cut_b = (first if len_a <= len_b else 0) + rest - rest // 2
  front_a, front_b = rng.binomial(cut_a, 0.5), rng.binomial(cut_b, 0.5)
  return (
    tokens_a[front_a : len_a - (cut_a - front_a)],
    tokens_b[front_b : len_b - (cut_b - front_b)],
  )


class ExampleMaker:
  """`maker(index, record)`: the example of `record` drawn from (seed, index), fixed-shape numpy.

  Features: tokens, segment_ids, attention_mask int32 [max_seq_len]; masked_positions,
  masked_ids (the original tokens there) int32 [max_predictions_per_seq]; masked_weights float32
  [max_predictions_per_seq] (0 for padding); next_sentence_label int32 [] (0 IsNext, 1 NotNext,
  as HF).
  """

  def __init__(
    self,
    documents: TokenizedDocuments,
    tokenizer: bert_tokenizer.BertTokenizer,
    options: PretrainingOptions,
    seed: int,
  ):
    if seed < 0:
      raise ValueError(f"seed={seed} must be >= 0")
    if documents.num_documents < 2:
      raise ValueError(
        f"{documents.num_documents} document(s): next sentence prediction draws NotNext "
        "sentences from another document, so at least 2 are needed"
      )
    self.documents, self.options, self.seed = documents, options, seed
    self.max_num_tokens = options.max_seq_len - 3  # room for [CLS], [SEP], [SEP]
    self.records = document_records(documents, self.max_num_tokens)
    if len(self.records) == 0:
      raise ValueError("no document has 2 or more sentences: there is no sentence pair to make")
    self.cls_id, self.sep_id, self.mask_id = tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id
    self.pad_id = tokenizer.pad_id
    specials = [tokenizer.pad_id, tokenizer.unk_id, self.cls_id, self.sep_id, self.mask_id]
    # Random replacements are any non-special token (Google draws from the whole vocabulary).
    self._random_ids = np.setdiff1d(np.arange(tokenizer.vocab_size, dtype=np.int32), specials)

  def _pair(
    self, record: np.ndarray, rng: np.random.Generator
  ) -> tuple[np.ndarray, np.ndarray, int]:
    """Sentences A and B and the NSP label, before truncation (Google's
    create_instances_from_document, one chunk of it, with an exact 50/50 label)."""
    doc, first, end = (int(x) for x in record)
    target = self.max_num_tokens
    if rng.random() < self.options.short_seq_prob:
      target = int(rng.integers(2, self.max_num_tokens + 1))
    # The fewest sentences (>= 2) of the record that reach the target length.
    starts = self.documents.sentence_starts
    reached = int(np.searchsorted(starts[first + 1 : end + 1] - starts[first], target))
    end = min(end, first + max(2, reached + 1))
    a_end = int(rng.integers(first + 1, end))  # A: sentences [first, a_end), >= 1 of them
    tokens_a = self.documents.sentences(first, a_end)
    if rng.random() >= 0.5:
      return tokens_a, self.documents.sentences(a_end, end), 0  # IsNext
    other = int(rng.integers(self.documents.num_documents - 1))
    other += other >= doc  # any document but this one
    lo, hi = (int(s) for s in self.documents.document_starts[other : other + 2])
    b_first = int(rng.integers(lo, hi))
    # Sentences from b_first on until they hold the rest of the target (at least one).
    wanted = max(1, target - len(tokens_a))
    reached = int(np.searchsorted(starts[b_first + 1 : hi + 1] - starts[b_first], wanted))
    return tokens_a, self.documents.sentences(b_first, min(hi, b_first + reached + 1)), 1

  def __call__(self, index: int, record_index: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([self.seed, index])
    tokens_a, tokens_b, label = self._pair(self.records[record_index], rng)
    tokens_a, tokens_b = truncate_seq_pair(tokens_a, tokens_b, self.max_num_tokens, rng)
    len_a, len_b = len(tokens_a), len(tokens_b)
    length = len_a + len_b + 3
    t, p = self.options.max_seq_len, self.options.max_predictions_per_seq

    tokens = np.full((t,), self.pad_id, np.int32)  # [CLS] A [SEP] B [SEP] [PAD]...
    tokens[0], tokens[len_a + 1], tokens[length - 1] = self.cls_id, self.sep_id, self.sep_id
    tokens[1 : len_a + 1], tokens[len_a + 2 : length - 1] = tokens_a, tokens_b
    segment_ids = np.zeros((t,), np.int32)
    segment_ids[len_a + 2 : length] = 1
    attention_mask = (np.arange(t) < length).astype(np.int32)

    # Masked LM (§3.1, Task #1): choose 15% of the A and B tokens, never [CLS], [SEP], [PAD].
    candidates = np.concatenate([np.arange(1, len_a + 1), np.arange(len_a + 2, length - 1)])
    num_masked = min(p, max(1, round(len(candidates) * self.options.masked_lm_prob)))
    positions = np.sort(rng.choice(candidates, num_masked, replace=False))
    original = tokens[positions]
    draw = rng.random(num_masked)
    replaced = np.where(draw < 0.8, self.mask_id, original)  # 80% [MASK], 10% kept
    random_ids = self._random_ids[rng.integers(len(self._random_ids), size=num_masked)]
    tokens[positions] = np.where(draw >= 0.9, random_ids, replaced)  # 10% a random token

    # [max_predictions_per_seq] each; padding predictions have position 0, id 0, weight 0.
    masked_positions = np.zeros((p,), np.int32)
    masked_positions[:num_masked] = positions
    masked_ids = np.zeros((p,), np.int32)
    masked_ids[:num_masked] = original
    masked_weights = (np.arange(p) < num_masked).astype(np.float32)
    return dict(
      tokens=tokens,
      segment_ids=segment_ids,
      attention_mask=attention_mask,
      masked_positions=masked_positions,
      masked_ids=masked_ids,
      masked_weights=masked_weights,
      next_sentence_label=np.asarray(label, np.int32),
    )


# --- grain pipelines ------------------------------------------------------------------------


def pretraining_dataset(
  documents: TokenizedDocuments,
  tokenizer: bert_tokenizer.BertTokenizer,
  options: PretrainingOptions,
  *,
  seed: int,
  shuffle: bool = False,
) -> grain.MapDataset:
  """One example per record; element `i + k * len` is epoch k's example (a fresh pair and masks),
  the records in a fresh order from `seed` when `shuffle`."""
  maker = ExampleMaker(documents, tokenizer, options, seed)
  ds = grain.MapDataset.range(len(maker.records))
  if shuffle:
    ds = ds.seed(seed).shuffle()
  # The index after the shuffle is unique over epochs and processes: it seeds the example.
  return ds.map_with_index(maker)


def train_iterator(
  data: PretrainingData,
  data_config: Any,
  batch_size: int,
  seed: int,
  process_index: int = 0,
  process_count: int = 1,
) -> grain.DatasetIterator:
  """Endless shuffled batches of `data_config.train_split` for this process; checkpointable
  (`get_state()` / `set_state()`).

  Process `i` takes records `i::process_count` of each epoch's order, so processes never share
  a record within an epoch. `batch_size` is per process; incomplete batches are dropped. The
  example options are read from `data_config` (see `PretrainingOptions`).
  """
  documents = data.documents(data_config.train_split)
  options = PretrainingOptions.from_config(data_config)
  ds = pretraining_dataset(documents, data.tokenizer, options, seed=seed, shuffle=True)
  return pipeline.train_iterator(ds, batch_size, process_index, process_count, what="records")


def eval_batches(
  data: PretrainingData,
  data_config: Any,
  batch_size: int,
  max_batches: int,
  seed: int = 0,
) -> list[dict[str, np.ndarray]]:
  """The first `max_batches` full batches of `data_config.eval_split`'s records in order (fewer
  if the split is short), drawn from a fixed seed: the same examples on every evaluation."""
  split = data_config.eval_split
  options = PretrainingOptions.from_config(data_config)
  ds = pretraining_dataset(data.documents(split), data.tokenizer, options, seed=seed)
  batches = pipeline.first_batches(ds, batch_size, max_batches)
  if not batches:
    raise ValueError(
      f"split '{split}' makes fewer than batch_size={batch_size} examples; lower the batch size "
      "or use a larger eval split"
    )
  return batches
