"""Image classification: a ViT (Dosovitskiy et al. 2020), or its baselines (a small CNN, softmax
regression), trained with cross-entropy on a TFDS image set; reports test accuracy, a confusion
matrix, the misclassified test images and (ViT) what the model attends to.

`config.architecture` picks the model ("vit", "cnn", "linear"); `config.model` holds its
config's fields. Pixels travel as uint8 and become floats in [-1, 1] on the device (HF's
ViTImageProcessor and big_vision's `value_range(-1, 1)`), resized there to the model's
`image_size` when `data.image_size` differs from the stored size. A run may start from a trained
ViT (`init.checkpoint`: a tfjax workdir of this task, or an HF ViT directory), at another
resolution when `init.resample_posemb` moves its position table to the new patch grid (§3.2).
"""

import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from tfjax.data import images, pipeline
from tfjax.inference import attention_views, load
from tfjax.models import image_baselines, vit
from tfjax.nn.stack import stack_layers, unstack_layers
from tfjax.training import metrics, plots
from tfjax.training.step import LossFn, accuracy, cross_entropy_loss, dropout_rngs
from tfjax.training.task import Task, TaskData, adopt_architecture, write_output

# architecture -> (config class, model class, logical axes of its parameters)
ARCHITECTURES = {
  "vit": (vit.ViTConfig, vit.ViT, vit.PARAM_AXES),
  "cnn": (image_baselines.CNNConfig, image_baselines.CNN, image_baselines.PARAM_AXES),
  "linear": (
    image_baselines.LinearConfig,
    image_baselines.SoftmaxRegression,
    image_baselines.PARAM_AXES,
  ),
}
ATTENTION_IMAGES = 6  # test images whose attention maps are drawn (ViT)
# What a run fine-tuning a ViT keeps of its own config; the rest comes from init.checkpoint.
FINE_TUNING_KEEPS = ("image_size", "num_classes", "pre_logits", "scan_layers")


def pixels(batch_images: jax.Array, image_size: int) -> jax.Array:
  """uint8 [b, h, w, c] -> float32 in [-1, 1], resized bilinearly to image_size x image_size."""
  x = batch_images.astype(jnp.float32) / 127.5 - 1.0
  b, h, w, c = x.shape
  if (h, w) != (image_size, image_size):
    x = jax.image.resize(x, (b, image_size, image_size, c), "bilinear")
  return x


def image_loss_fn(model: nn.Module, image_size: int) -> LossFn:
  """Mean cross-entropy over the (weighted) images; aux["num_tokens"] counts images."""

  def loss_fn(params: Any, batch: dict, dropout_rng: Any, deterministic: bool):
    logits = model.apply(
      {"params": params},
      pixels(batch["image"], image_size),
      deterministic=deterministic,
      rngs=dropout_rngs(dropout_rng, deterministic),
    )
    weights = batch.get("weights")
    loss, num_images = cross_entropy_loss(logits, batch["label"], weights)
    return loss, {"num_tokens": num_images, "accuracy": accuracy(logits, batch["label"], weights)}

  return loss_fn


class ImageClassificationTask(Task):
  """A classifier of images; the run's report compares it with always guessing the most
  frequent training label."""

  # Tokens/s in the logs count images: an example is one "token" of the batch.
  seq_len_field = ""
  run_identity = (
    "architecture",
    "data.name",
    "data.image_field",
    "data.label_field",
    "data.train_split",
    "data.image_size",
    "data.crop_padding",
    "data.flip",
    "init.checkpoint",
    "train.seed",
  )

  def __init__(self, config: Any):
    architecture = config.get("architecture", "vit")
    if architecture not in ARCHITECTURES:
      raise ValueError(
        f"architecture={architecture!r} is unknown; choose one of {sorted(ARCHITECTURES)}"
      )
    self.model_config_cls, self._model_cls, self.param_axes = ARCHITECTURES[architecture]
    self.architecture = architecture
    super().__init__(config)

  @property
  def seq_len(self) -> int:
    return 1

  def pretrained_key(self) -> str | None:
    """The ViT body of init.checkpoint, what LoRA (config.lora) freezes; its new head trains."""
    return "vit" if self.config.get("init", {}).get("checkpoint", "") else None

  def validate(self) -> None:
    data, init = self.config.data, self.config.get("init", {})
    if data.get("crop_padding", 0) < 0:
      raise ValueError(f"data.crop_padding={data.crop_padding} must be >= 0 (0: no crops)")
    resize = data.get("image_size", 0)
    if resize and resize != self.model_config.image_size:
      raise ValueError(
        f"data.image_size={resize} resizes the images to another size than model.image_size="
        f"{self.model_config.image_size}; set both to the same size (or data.image_size=0 to "
        "keep the stored size)"
      )
    checkpoint = init.get("checkpoint", "")
    if checkpoint and self.architecture != "vit":
      raise ValueError(
        f"init.checkpoint is for a ViT; architecture={self.architecture!r} trains from scratch"
      )
    # From its config.json alone, before the run claims a workdir. (A resumed run needs no
    # init.checkpoint: a missing one is reported only when a fresh run reads its weights.)
    if checkpoint and os.path.isdir(checkpoint):
      try:
        source = load.read_config(checkpoint, "vit")[1]
      except (ValueError, FileNotFoundError) as e:
        raise type(e)(f"init.checkpoint: {e}") from e
      # Its architecture, so its weights fit and compute what they computed; the resolution,
      # the head and the layer layout are this run's.
      try:
        self.model_config = adopt_architecture(
          self.config, self.model_config, source, checkpoint, keep=FINE_TUNING_KEEPS
        )
      except ValueError as e:  # e.g. model.image_size and the checkpoint's patch size
        raise ValueError(f"with the architecture of init.checkpoint={checkpoint!r}: {e}") from e
      check_source(checkpoint, source, self.model_config, init.get("resample_posemb", False))

  # ----------------------------------------------------------------------------------- data

  def prepare_data(self, workdir: str, process_index: int, process_count: int) -> TaskData:
    data_cfg = self.config.data
    self._data = images.prepare_image_data(data_cfg)
    self._check_data_fits_model()
    train_iter = images.train_iterator(
      self._data.train,
      **self.train_iterator_args(process_index, process_count),
      crop_padding=data_cfg.get("crop_padding", 0),
      flip=data_cfg.get("flip", False),
    )
    eval_batches = pipeline.eval_batches(self._data.eval, self.config.train.batch_size)
    return TaskData(train_iter, eval_batches)

  def _check_data_fits_model(self) -> None:
    """The head takes the dataset's classes (as BERT's classifier takes its labels); channels
    and image size must match the model."""
    cfg, data = self.model_config, self._data
    height, width, channels = data.image_shape
    name, resize = self.config.data.name, self.config.data.get("image_size", 0)
    if data.num_labels != cfg.num_classes:
      logging.warning(
        "model.num_classes %d -> %d: the classes of dataset '%s'",
        cfg.num_classes,
        data.num_labels,
        name,
      )
      self.config.model.num_classes = data.num_labels
      self.model_config = self.model_config.replace(num_classes=data.num_labels)
    if channels != cfg.num_channels:
      raise ValueError(
        f"dataset '{name}' has {channels}-channel images but model.num_channels="
        f"{cfg.num_channels}; set --config.model.num_channels={channels}"
      )
    if height != width and not resize:
      raise ValueError(
        f"dataset '{name}' has {height}x{width} images; set data.image_size to resize them to "
        "a square"
      )
    size = resize or height
    if size != cfg.image_size:
      raise ValueError(
        f"the images are {size}x{size} (dataset '{name}', data.image_size={resize}) but "
        f"model.image_size={cfg.image_size}; set --config.data.image_size={cfg.image_size} to "
        f"resize them, or --config.model.image_size={size}"
      )

  # ---------------------------------------------------------------------------------- model

  def model(self, activation_sharding: Any = None) -> nn.Module:
    return self._model_cls(self.model_config, activation_sharding=activation_sharding)

  def init_params(self, rng: jax.Array) -> Any:
    cfg = self.model_config
    image = jnp.zeros((1, cfg.image_size, cfg.image_size, cfg.num_channels), jnp.float32)
    return self.model().init(rng, image)["params"]

  def loss_fn(self, model: nn.Module) -> LossFn:
    return image_loss_fn(model, self.model_config.image_size)

  def initial_params(self, params: Any) -> Any:
    checkpoint = self.config.get("init", {}).get("checkpoint", "")
    if not checkpoint:
      return params
    return start_from(checkpoint, self.model_config, params, self.config.init.resample_posemb)

  def flops_per_token(self, abstract_params: Any) -> float | None:
    return None  # convolutions and attention over patches: no one-line formula per image

  # ------------------------------------------------------------------------------------ end

  def finish(self, params: Any, workdir: str, final: dict[str, Any], data: TaskData) -> list[str]:
    lines = [
      f"step {final['step']}: eval accuracy {final['eval_accuracy']:.4f} "
      f"(loss {final['eval_loss']:.4f})"
    ]
    test = self._data.test
    if test is None:
      return lines
    model, size = self.model(), self.model_config.image_size
    predict = jax.jit(lambda p, x: model.apply({"params": p}, pixels(x, size)).argmax(-1))
    batches = pipeline.eval_batches(test, self.config.train.batch_size)
    predicted = np.concatenate([np.asarray(predict(params, b["image"])) for b in batches])
    predicted = predicted[: len(test)]
    labels, names = test.label, self._data.label_names
    final["test_accuracy"] = float(np.mean(predicted == labels))
    majority = np.bincount(self._data.train.label, minlength=len(names)).argmax()
    final["test_majority_class_accuracy"] = float(np.mean(labels == majority))
    lines.append(
      f"test accuracy {final['test_accuracy']:.4f} on {len(test)} images (always the most "
      f"frequent training label: {final['test_majority_class_accuracy']:.4f})"
    )
    if jax.process_index() != 0:
      return lines
    matrix = metrics.confusion_matrix(labels, predicted, len(names))
    write_output(workdir, "confusion_matrix.json", _json_rows(matrix, names))
    plots.plot_confusion_matrix(matrix, names, os.path.join(workdir, "confusion_matrix.png"))
    plots.plot_misclassified(
      test.image, labels, predicted, names, os.path.join(workdir, "misclassified.png")
    )
    lines.append(f"confusion matrix, misclassified test images: {workdir}/*.png")
    if self.architecture == "vit":
      self._draw_attention(params, test, predicted, workdir)
      lines.append(f"what the ViT attends to: {workdir}/attention.png, attention_layers.png")
    return lines

  def _draw_attention(self, params: Any, test: Any, predicted: np.ndarray, workdir: str) -> None:
    """[CLS] attention per layer and head, and its rollout, over the first test images."""
    cfg = self.model_config
    shown = test.image[:ATTENTION_IMAGES]
    _, state = self.model().apply(
      {"params": params}, pixels(jnp.asarray(shown), cfg.image_size), mutable=["intermediates"]
    )
    cls_maps, rollout = attention_views.views(state, cfg)  # [layers, b, heads, h, w], [b, h, w]
    labels, names = test.label[: len(shown)], self._data.label_names
    plots.plot_image_attention(
      shown,
      cls_maps,
      rollout,
      labels,
      os.path.join(workdir, "attention.png"),
      predictions=predicted[: len(shown)],
      label_names=names,
      max_images=len(shown),
    )
    plots.plot_attention_layers(
      shown[0],
      np.asarray(cls_maps)[:, 0],
      os.path.join(workdir, "attention_layers.png"),
      title=f"test image 0: true {names[labels[0]]}, predicted {names[predicted[0]]}",
    )
    logging.info("Attention maps of %d test images in %s", len(shown), workdir)


def _json_rows(matrix: np.ndarray, names: tuple[str, ...]) -> str:
  """The confusion matrix as JSON: {"labels": names, "counts": rows = true, columns = predicted}."""
  return json.dumps({"labels": list(names), "counts": matrix.tolist()}, indent=1)


def check_source(checkpoint: str, source: vit.ViTConfig, config: vit.ViTConfig, resample: bool):
  """Raises unless the ViT `source` of `checkpoint` has `config`'s patch grid, or its position
  table is to be resampled to it."""
  if source.grid != config.grid and not resample:
    raise ValueError(
      f"init.checkpoint={checkpoint!r} was trained on {source.image_size}x{source.image_size} "
      f"images ({source.grid[0]}x{source.grid[1]} patches), the model takes "
      f"{config.image_size}x{config.image_size} ({config.grid[0]}x{config.grid[1]}); set "
      "--config.init.resample_posemb=True to resample its position embeddings bilinearly"
    )


def start_from(checkpoint: str, config: vit.ViTConfig, params: Any, resample: bool) -> Any:
  """`params` with the body of the ViT in `checkpoint` in place of theirs, and their fresh zero
  head: "we remove the pre-trained prediction head and attach a zero-initialized D x K
  feedforward layer" (Dosovitskiy et al. 2020, §3.2), the pre-logits layer (HF's pooler) too
  unless the model has one. The body's position table is resampled to the model's patch grid
  when `resample`, and its layers take the model's layout (scanned or not)."""
  loaded = load.load(checkpoint, "vit", tokenizer=False)
  source: vit.ViTConfig = loaded.config
  check_source(checkpoint, source, config, resample)
  body = unstack_layers(dict(loaded.params.get("vit", loaded.params)))
  if "pre_logits" in body and not config.pre_logits:
    del body["pre_logits"]
    logging.info("Fine-tuning without the pre-logits layer (HF's pooler) of %s", checkpoint)
  if source.grid != config.grid:
    body = vit.resample_params(body, source, config)
    logging.warning(
      "position embeddings of %s resampled from a %dx%d to a %dx%d patch grid",
      checkpoint,
      *source.grid,
      *config.grid,
    )
  if config.scan_layers:
    body = stack_layers(body, config.num_layers)
  shapes = lambda tree: jax.tree.map(np.shape, tree)
  if shapes(body) != shapes(params["vit"]):
    raise ValueError(
      f"the ViT of init.checkpoint={checkpoint!r} does not fit the model; fine-tune with the "
      "architecture it was trained with (model.* as in its config.json)"
    )
  logging.info("Fine-tuning the body of %s with a new zero-initialised head", checkpoint)
  return {**params, "vit": jax.tree.map(jnp.asarray, body)}
