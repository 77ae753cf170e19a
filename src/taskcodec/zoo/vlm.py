"""The vision–language models trained on the generated scenes (:mod:`taskcodec.zoo.scenes`).

Real BLIP / ViT weights cannot be had offline, so the pipeline's captioning, VQA and scene
classification models are small configurations of the ``transformers`` classes, trained here
(``scripts/train_scene_models.py``) and shipped with the package (float16 safetensors, about
9 MB in all, with a JSON record of the settings, seed and measured accuracy):

* ``scenes-blip`` — :class:`transformers.BlipForConditionalGeneration` (captioning) and
  :class:`transformers.BlipForQuestionAnswering` (VQA) around **one shared**
  :class:`transformers.BlipVisionModel`: one token map ``[N, 65, 128]`` (CLS + 8 × 8 patches
  of 28 px) serves both tasks, so a device sends one map for a caption and any questions;
* ``scenes-vit`` — :class:`transformers.ViTForImageClassification` for the 24 scene classes.

:func:`tokenizer` is a BERT WordPiece tokenizer over the benchmark's words (BLIP's tokenizer
class; the vocabulary file ships beside the weights). :func:`caption` and :func:`answer` run
the text side from a token map, which is what the edge does with a split request.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from taskcodec.errors import BadInputError, MissingWeightsError

__all__ = ["TRAINED_DIR", "VOCAB", "IMAGE_MEAN", "IMAGE_STD", "tokenizer", "blip_config",
           "vit_config", "build_blip", "build_vit", "load_blip", "load_vit", "record",
           "pixels", "caption", "answer", "answer_logits", "caption_logits", "text_fisher",
           "question_ids", "answer_ids", "question_states", "GENERIC_QUESTIONS",
           "vision_state_from_vit", "blip_module", "blip_state", "load_weights",
           "MAX_QUESTION_TOKENS"]

TRAINED_DIR = Path(__file__).resolve().parent / "trained"
VOCAB = TRAINED_DIR / "scenes-vocab.txt"
IMAGE_MEAN = (0.4815, 0.4578, 0.4082)  # BLIP's normalisation (OpenAI CLIP)
IMAGE_STD = (0.2686, 0.2613, 0.2758)
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]")
MAX_QUESTION_TOKENS = 32  # the text encoder's positions


def vocab_lines() -> List[str]:
    """The tokenizer's vocabulary: special tokens, then :func:`scenes.vocabulary`."""
    from taskcodec.zoo import scenes

    return list(SPECIALS) + scenes.vocabulary()


@functools.lru_cache(maxsize=1)
def tokenizer() -> Any:
    """BLIP's tokenizer class (BERT WordPiece, lower case) over the scene words; ``[DEC]``
    starts the decoders, ``[SEP]`` ends them."""
    from transformers import BertTokenizerFast

    if not VOCAB.is_file():
        raise MissingWeightsError(f"{VOCAB} is missing: reinstall taskcodec")
    return BertTokenizerFast(str(VOCAB), do_lower_case=True,
                             additional_special_tokens=["[DEC]"])


def blip_config() -> Any:
    from transformers import BlipConfig

    tok = tokenizer()
    small = dict(hidden_size=128, num_attention_heads=4, intermediate_size=512)
    return BlipConfig(
        vision_config=dict(image_size=224, patch_size=28, num_hidden_layers=4, **small),
        text_config=dict(vocab_size=len(tok), num_hidden_layers=2, encoder_hidden_size=128,
                         max_position_embeddings=MAX_QUESTION_TOKENS,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.convert_tokens_to_ids("[DEC]"),
                         sep_token_id=tok.sep_token_id, eos_token_id=tok.sep_token_id, **small),
        projection_dim=128,
    )


def vit_config() -> Any:
    from transformers import ViTConfig

    from taskcodec.zoo import scenes

    return ViTConfig(image_size=224, patch_size=28, hidden_size=128, num_hidden_layers=4,
                     num_attention_heads=4, intermediate_size=512, num_labels=len(scenes.CLASSES),
                     id2label=dict(enumerate(scenes.CLASSES)),
                     label2id={c: i for i, c in enumerate(scenes.CLASSES)})


def build_blip(seed: int = 0) -> Tuple[Any, Any]:
    """A captioner and a VQA model sharing one vision model (random weights from ``seed``)."""
    import torch
    from transformers import BlipForConditionalGeneration, BlipForQuestionAnswering

    torch.manual_seed(seed)
    cfg = blip_config()
    vqa = BlipForQuestionAnswering(cfg)
    captioner = BlipForConditionalGeneration(cfg)
    captioner.vision_model = vqa.vision_model
    return captioner, vqa


def build_vit(seed: int = 0) -> Any:
    import torch
    from transformers import ViTForImageClassification

    torch.manual_seed(seed)
    return ViTForImageClassification(vit_config())


def vision_state_from_vit(vit: Any) -> Dict[str, Any]:
    """A :class:`transformers.BlipVisionModel` state dict holding a same-size
    :class:`transformers.ViTForImageClassification`'s encoder (both pre-LN transformers: Q, K
    and V stacked into BLIP's ``qkv``, the final layer norm as ``post_layernorm``); the
    classifier head is left out. ``scripts/train_scene_models.py --vision-from`` starts the
    BLIP's vision model from the trained scene classifier this way."""
    import torch

    v = {k[len("vit."):]: t for k, t in vit.state_dict().items() if k.startswith("vit.")}
    out = {"embeddings.class_embedding": v["embeddings.cls_token"],
           "embeddings.position_embedding": v["embeddings.position_embeddings"],
           "embeddings.patch_embedding.weight": v["embeddings.patch_embeddings.projection.weight"],
           "embeddings.patch_embedding.bias": v["embeddings.patch_embeddings.projection.bias"],
           "post_layernorm.weight": v["layernorm.weight"], "post_layernorm.bias": v["layernorm.bias"]}
    for i in range(vit.config.num_hidden_layers):
        a, b = f"layers.{i}.", f"encoder.layers.{i}."
        for kind in ("weight", "bias"):
            out[b + f"self_attn.qkv.{kind}"] = torch.cat(
                [v[a + f"attention.{x}_proj.{kind}"] for x in "qkv"])
            out[b + f"self_attn.projection.{kind}"] = v[a + f"attention.o_proj.{kind}"]
            out[b + f"layer_norm1.{kind}"] = v[a + f"layernorm_before.{kind}"]
            out[b + f"layer_norm2.{kind}"] = v[a + f"layernorm_after.{kind}"]
            out[b + f"mlp.fc1.{kind}"] = v[a + f"mlp.fc1.{kind}"]
            out[b + f"mlp.fc2.{kind}"] = v[a + f"mlp.fc2.{kind}"]
    return out


def _weights(name: str) -> Path:
    path = TRAINED_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise MissingWeightsError(f"{path} is missing: reinstall taskcodec, or train it with "
                                  f"python scripts/train_scene_models.py --model {name.split('-')[-1]}")
    return path


def load_weights(module: Any, path: Path) -> None:
    """Load float16 safetensors written by ``scripts/train_scene_models.py`` into ``module``
    (tied LM-head weights are not stored); :class:`~taskcodec.MissingWeightsError` when they
    do not match."""
    from safetensors.torch import load_file

    state = {k: v.float() for k, v in load_file(str(path)).items()}
    missing, unexpected = module.load_state_dict(state, strict=False)
    # tied weights (the LM heads' decoder = word embeddings) are not stored twice
    missing = [k for k in missing if not k.endswith(("predictions.decoder.weight", "predictions.decoder.bias"))]
    if missing or unexpected:
        raise MissingWeightsError(f"{path.name} does not match the model: missing {missing[:3]}, "
                                  f"unexpected {unexpected[:3]}")


def blip_module(captioner: Any, vqa: Any) -> Any:
    """One module holding both BLIP models (shared vision model, the VQA text encoder /
    decoder, the caption decoder): what the shipped ``scenes-blip`` weights are the state of."""
    import torch

    pair = torch.nn.Module()
    pair.vqa = vqa
    pair.caption_decoder = captioner.text_decoder
    return pair


def blip_state(captioner: Any, vqa: Any) -> Dict[str, Any]:
    """The state dict of :func:`blip_module`."""
    return blip_module(captioner, vqa).state_dict()


@functools.lru_cache(maxsize=1)
def load_blip() -> Tuple[Any, Any]:
    """The shipped captioner and VQA model (eval mode, shared vision model)."""
    captioner, vqa = build_blip()
    load_weights(blip_module(captioner, vqa), _weights("scenes-blip"))
    captioner.tie_weights()
    vqa.tie_weights()
    return captioner.eval(), vqa.eval()


@functools.lru_cache(maxsize=1)
def load_vit() -> Any:
    """The shipped scene classifier (eval mode)."""
    vit = build_vit()
    load_weights(vit, _weights("scenes-vit"))
    return vit.eval()


def record(name: str) -> Dict[str, Any]:
    """The JSON record a shipped model was trained with (settings, seed, time, accuracy)."""
    path = TRAINED_DIR / f"{name}.json"
    if not path.is_file():
        raise MissingWeightsError(f"{path} is missing")
    return json.loads(path.read_text())


def pixels(images: Any) -> Any:
    """``uint8 [H, W, 3]`` images (one or a batch) -> normalized ``float [N, 3, 224, 224]``."""
    import torch
    from torchvision.transforms.v2 import functional as F

    a = np.asarray(images)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise BadInputError(f"images must be uint8 [N, H, W, 3], got {a.dtype} {list(a.shape)}")
    # torch takes any non-negative strides as they are (a scene is a strided view): no copy
    x = torch.from_numpy(a if min(a.strides) >= 0 else a.copy()).permute(0, 3, 1, 2)
    if tuple(x.shape[-2:]) != (224, 224):
        x = F.resize(x, [224, 224], antialias=True)
    return F.normalize(x.float() / 255.0, list(IMAGE_MEAN), list(IMAGE_STD))


def greedy(decoder: Any, states: Any, mask: Any, max_new_tokens: int) -> Any:
    """Greedy decoding of a BLIP text decoder cross-attending to ``states`` (``mask`` over
    them): ``[DEC]`` then the argmax token until ``[SEP]`` or ``max_new_tokens``. The same
    tokens as ``generate(do_sample=False)``, without its fixed cost per call (about 20 ms
    here), one token a step with the earlier tokens' keys and values kept
    (:class:`~taskcodec.zoo.blip_decode.StepDecoder`; ``bench/vlm_decode.py`` times it
    against ``transformers`` recomputing the prefix: 4.1x faster for a caption)."""
    from taskcodec.zoo.blip_decode import StepDecoder

    tok = tokenizer()
    return StepDecoder(decoder).greedy(states, mask, max_new_tokens, decoder.config.bos_token_id,
                                       tok.sep_token_id, tok.pad_token_id)


def caption(captioner: Any, image_embeds: Any, max_new_tokens: int = 20) -> List[str]:
    """Greedy captions from the vision model's output ``[N, 65, 128]``."""
    import torch

    mask = torch.ones(image_embeds.shape[:2], dtype=torch.long)
    out = greedy(captioner.text_decoder, image_embeds, mask, max_new_tokens)
    return [t.strip() for t in tokenizer().batch_decode(out, skip_special_tokens=True)]


def question_ids(questions: Sequence[str]) -> Tuple[Any, Any, List[bool]]:
    """Token ids and mask of ``questions`` (padded), and whether each was cut to
    :data:`MAX_QUESTION_TOKENS` (its end dropped, ``[SEP]`` kept), from one tokenization."""
    import torch

    tok = tokenizer()
    full = tok(list(questions)).input_ids
    cut = [len(f) > MAX_QUESTION_TOKENS for f in full]
    rows = [f[:MAX_QUESTION_TOKENS - 1] + [tok.sep_token_id] if c else f for f, c in zip(full, cut)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return ids, mask, cut


def answer(vqa: Any, image_embeds: Any, questions: Sequence[str],
           max_new_tokens: int = 4) -> List[str]:
    """Greedy answers, one per question, from the token maps ``image_embeds`` (one per question,
    or one for all)."""
    return answer_ids(vqa, image_embeds, *question_ids(questions)[:2], max_new_tokens)


def answer_ids(vqa: Any, image_embeds: Any, ids: Any, mask: Any,
               max_new_tokens: int = 4) -> List[str]:
    """:func:`answer` for questions already tokenized by :func:`question_ids`."""
    import torch

    tok = tokenizer()
    if image_embeds.shape[0] == 1 and ids.shape[0] > 1:
        image_embeds = image_embeds.expand(ids.shape[0], -1, -1)
    if image_embeds.shape[0] != ids.shape[0]:
        raise BadInputError(f"{image_embeds.shape[0]} token maps for {ids.shape[0]} questions")
    with torch.inference_mode():
        q = question_states(vqa, image_embeds, ids, mask)
    out = greedy(vqa.text_decoder, q, mask, max_new_tokens)
    return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]


def question_states(vqa: Any, image_embeds: Any, ids: Any, mask: Any) -> Any:
    """The VQA text encoder's states of the questions ``ids`` (``mask`` over them) asked of the
    token maps ``image_embeds`` (one per question): what the answer decoder attends to. Runs
    under the caller's autograd mode."""
    return vqa.text_encoder(input_ids=ids, attention_mask=mask, encoder_hidden_states=image_embeds,
                            return_dict=False)[0]


GENERIC_QUESTIONS = (
    "how many objects are there?", "what colour is the largest object?",
    *(f"what shape is the {c} object?" for c in ("red", "green", "blue", "yellow", "purple", "cyan")),
    *(f"how many {s}s are there?" for s in ("circle", "square", "triangle", "diamond")),
    "is the red object large or small?", "is there a blue circle?",
    "is the green object to the left of the yellow object?", "is the purple object above the cyan object?",
    "are there more squares than circles?", "what colour is the triangle?",
)
"""Questions that make sense for any scene: what :class:`AnswerLogits` asks."""


def answer_logits(vqa: Any, tail: Any) -> Any:
    """A module ``f -> [N, vocab]``: the VQA model's logits of the first answer token from the
    token map ``f`` of a cut (``tail`` the vision model's rest, from ``tc.split.partition``),
    row ``i`` asking :data:`GENERIC_QUESTIONS` ``[i mod 20]``. It is the "tail" that weighs a
    token map's channels by what the answers depend on
    (``FeatureCodec.calibrate(..., transform="task", tail=...)``)."""
    import torch

    class AnswerLogits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vqa, self.tail = vqa, tail
            self.ids, self.mask, _ = question_ids(GENERIC_QUESTIONS)

        def forward(self, f: Any) -> Any:
            emb = self.tail(f).last_hidden_state
            rows = torch.arange(f.shape[0]) % self.ids.shape[0]
            ids, mask = self.ids[rows], self.mask[rows]
            q = question_states(self.vqa, emb, ids, mask)
            bos = torch.full((f.shape[0], 1), self.vqa.config.text_config.bos_token_id, dtype=torch.long)
            out = self.vqa.text_decoder(input_ids=bos, encoder_hidden_states=q,
                                        encoder_attention_mask=mask)
            return out.logits[:, -1]

    return AnswerLogits().eval()


def caption_logits(captioner: Any, tail: Any) -> Any:
    """A module ``f -> [N, length, vocab]``: the caption decoder's logits along the greedy
    caption it writes from the token map ``f`` (teacher-forced on that caption)."""
    import torch

    class CaptionLogits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.captioner, self.tail = captioner, tail

        def forward(self, f: Any) -> Any:
            emb = self.tail(f).last_hidden_state
            mask = torch.ones(emb.shape[:2], dtype=torch.long, device=emb.device)
            ids = greedy(self.captioner.text_decoder, emb.detach(), mask, 20).clone()
            return self.captioner.text_decoder(input_ids=ids, encoder_hidden_states=emb,
                                               encoder_attention_mask=mask).logits

    return CaptionLogits().eval()


def text_fisher(maps: Any, captioner: Any, vqa: Any, tail: Any) -> np.ndarray:
    """The sensitivity of the text side to a cut's token-map channels, ``[C, C]``: the Fisher
    information of the VQA answers (:func:`answer_logits`) plus that of the captions
    (:func:`caption_logits`), each scaled to unit trace. Pass it as
    ``FeatureCodec.calibrate(maps, channel_axis=-1, transform="task", tail=<this>)``: one
    transform that keeps what both tasks read."""
    from taskcodec.nn.transforms import tail_fisher

    parts = [tail_fisher(maps, m, channel_axis=-1)
             for m in (answer_logits(vqa, tail), caption_logits(captioner, tail))]
    return sum(p / max(float(np.trace(p)), 1e-30) for p in parts)
