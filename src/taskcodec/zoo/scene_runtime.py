"""The pipeline's captioning and VQA runtime: the BLIP models trained on generated scenes
(:mod:`taskcodec.zoo.vlm`), whole (edge-only) or split after block ``k`` of their shared vision
model (the token map ``[1, 65, 128]`` crosses the link, coded by a calibrated
:class:`taskcodec.nn.FeatureCodec`).

With ``TASKCODEC_BLIP_MODEL=<name or path>`` the real ``BlipForConditionalGeneration`` /
``BlipForQuestionAnswering`` weights of that name are loaded with ``from_pretrained`` instead
(the hub or a local copy); they serve edge-only (their two vision models differ, so no single
token map serves both tasks, and no calibration ships for them).
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from taskcodec.errors import BadInputError
from taskcodec.zoo.registry import CutRuntime

__all__ = ["SceneBlipRuntime", "CALIBRATION_SCENES"]

CALIBRATION_SCENES = 32
"""Validation scenes (seed 0) the edge calibrates the token-map codecs on: half to fit each
codec, half to measure its frame size and agreement."""


class SceneBlipRuntime(CutRuntime):
    """Captioning and VQA from one token map; see the module docstring."""

    def __init__(self) -> None:
        import taskcodec as tc
        from taskcodec.zoo import vlm
        from taskcodec.zoo.registry import REGISTRY

        self.spec = REGISTRY["scenes-blip"]
        self.calibrations: Dict[Tuple[int, Any], Any] = {}
        self.processor = None
        real = os.environ.get("TASKCODEC_BLIP_MODEL")
        if real:
            from transformers import (BlipForConditionalGeneration, BlipForQuestionAnswering,
                                      BlipProcessor)

            self.processor = BlipProcessor.from_pretrained(real)
            self.tokenizer = self.processor.tokenizer
            self.captioner = BlipForConditionalGeneration.from_pretrained(real).eval()
            self.vqa = BlipForQuestionAnswering.from_pretrained(real).eval()
            self.parts: Dict[int, Any] = {}
            return
        self.tokenizer = vlm.tokenizer()
        self.captioner, self.vqa = vlm.load_blip()
        self.vision = self.vqa.vision_model  # shared with the captioner
        self.parts = {at: tc.split.partition(self.vision, at) for at in self.spec.cut_points}

    @property
    def model(self) -> Any:
        return self.vqa.vision_model

    # ------------------------------------------------------------ pieces
    def preprocess(self, photo: np.ndarray) -> Any:
        """``uint8 [H, W, 3]`` -> normalized ``[1, 3, 224, 224]``."""
        from taskcodec.zoo import vlm

        if self.processor is not None:
            return self.processor(images=photo, return_tensors="pt").pixel_values
        return vlm.pixels(photo)

    def tail(self, z: Any, at: int) -> Any:
        """The vision model's output (``image_embeds``) from the token map of cut ``at``."""
        return self._tail(z, at).last_hidden_state

    def text(self, embeds: Any, task: str, question: Optional[str] = None) -> Dict[str, Any]:
        """The caption or the answer from ``image_embeds`` (one image)."""
        return self.text_batch(embeds[:1], task, [question])[0]

    def text_batch(self, embeds: Any, task: str,
                   questions: Sequence[Optional[str]]) -> List[Dict[str, Any]]:
        """Captions, or answers to ``questions`` (one per row of ``embeds``), in one batch."""
        from taskcodec.zoo import vlm

        if task == "caption":
            return [{"answer": c} for c in vlm.caption(self.captioner, embeds)]
        if task != "vqa":
            raise BadInputError(f"scenes-blip does {list(self.spec.tasks)}, not {task!r}")
        if not all(questions):
            raise BadInputError("a VQA request needs a question")
        # The text encoder holds MAX_QUESTION_TOKENS tokens: a longer question is cut there
        # (its end dropped) and the reply says so.
        ids, mask, cut = vlm.question_ids([str(q) for q in questions])
        return [{"answer": a, "question_truncated": bool(c)}
                for a, c in zip(vlm.answer_ids(self.vqa, embeds, ids, mask), cut)]

    def run_batch(self, pixel_values: Any, task: str,
                  questions: Sequence[Optional[str]]) -> List[Dict[str, Any]]:
        """Edge-only, batched: the whole model on ``[N, 3, 224, 224]``, an answer per row."""
        import torch

        if self.processor is not None:
            return [self._run_real(pixel_values[i:i + 1], task, q)
                    for i, q in enumerate(questions)]
        with torch.inference_mode():
            embeds = self.vision(pixel_values=pixel_values).last_hidden_state
        return self.text_batch(embeds, task, questions)

    def answer_batch(self, z: Any, at: int, task: str,
                     questions: Sequence[Optional[str]]) -> List[Dict[str, Any]]:
        """Split, batched: the rest of the vision model on ``[N, 65, 128]`` token maps."""
        return self.text_batch(self.tail(z, at), task, questions)

    def _run_real(self, pixel_values: Any, task: str, question: Optional[str]) -> Dict[str, Any]:
        import torch

        with torch.inference_mode():
            if task == "caption":
                out = self.captioner.generate(pixel_values=pixel_values, max_new_tokens=20)
            elif task == "vqa":
                if not question:
                    raise BadInputError("a VQA request needs a question")
                ids = self.tokenizer(question, return_tensors="pt", truncation=True,
                                     max_length=self.vqa.config.text_config.max_position_embeddings)
                out = self.vqa.generate(pixel_values=pixel_values, input_ids=ids.input_ids,
                                        max_new_tokens=6)
            else:
                raise BadInputError(f"scenes-blip does {list(self.spec.tasks)}, not {task!r}")
        return {"answer": self.tokenizer.decode(out[0], skip_special_tokens=True).strip()}

    # ------------------------------------------------------------ calibration, profile
    def _outputs(self, embeds: Any, qa: Sequence[Tuple[int, str]]) -> List[str]:
        """Captions of every image, then the answers to ``qa`` ((image, question) pairs)."""
        from taskcodec.zoo import vlm

        caps = vlm.caption(self.captioner, embeds)
        answers = vlm.answer(self.vqa, embeds[[i for i, _ in qa]], [q for _, q in qa])
        return caps + answers

    def calibrate(self, n: int = CALIBRATION_SCENES) -> None:
        """Fit a token-map :class:`~taskcodec.nn.FeatureCodec` per (cut, rate) on half of ``n``
        validation scenes, with the task transform (its sensitivity the Fisher information of
        the answers and the captions, :func:`taskcodec.zoo.vlm.text_fisher`; the rate is its
        step); measure its frame size and its agreement with the uncompressed
        model (every caption and every answer to the scenes' questions) on the other half."""
        import torch

        from taskcodec.nn import FeatureCodec
        from taskcodec.zoo import scenes, vlm
        from taskcodec.zoo.registry import CodecCalibration

        if not self.parts:
            return
        val = scenes.scenes(0, "val", n)
        x = self.preprocess(np.stack([s.image for s in val]))
        fit, held = x[0::2], x[1::2]
        qa = [(i, q) for i, s in enumerate(val[1::2]) for q, _ in s.qa]
        with torch.inference_mode():
            ref = self._outputs(self.vision(pixel_values=held).last_hidden_state, qa)
        for at in self.spec.cut_points:
            f_fit, f_held = self.head(fit, at), self.head(held, at)
            # the answers' sensitivity to the token map's channels, once per cut
            fisher = vlm.text_fisher(f_fit, self.captioner, self.vqa, self.parts[at][1])
            for rate in self.spec.rates:
                codec = FeatureCodec.calibrate(f_fit, channel_axis=-1, step_per_std=rate,
                                               params_in_frame=False, transform="task",
                                               tail=fisher)
                blobs = [codec.compress(f_held[i:i + 1]) for i in range(f_held.shape[0])]
                z = torch.cat([codec.decompress(b) for b in blobs])
                got = self._outputs(self.tail(z, at), qa)
                agreement = float(np.mean([a == b for a, b in zip(got, ref)]))
                self.calibrations[(at, rate)] = CodecCalibration(
                    at, rate, codec, tuple(int(s) for s in f_held.shape[1:]),
                    float(np.mean([len(b) for b in blobs])), agreement)

    def profile(self, runs: int = 5) -> Any:
        """:func:`taskcodec.split.profile` of the vision model's registered cuts (one image)."""
        import taskcodec as tc
        import torch

        x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        return tc.split.profile(self.vision, x, list(self.spec.cut_points), runs=runs, flops=False)

    def tail_ms(self, runs: int = 5) -> Dict[int, float]:
        """Per cut, the edge's ms for the rest of the vision model plus a caption (the longer
        of the two text tasks)."""
        import torch

        from taskcodec.zoo import scenes

        if not self.parts:
            return {}
        x = self.preprocess(scenes.scene(0, "val", 0).image)
        with torch.inference_mode():
            embeds = self.vision(pixel_values=x).last_hidden_state
        times = []
        for _ in range(max(1, runs)):
            t0 = time.perf_counter()
            self.text(embeds, "caption")
            times.append((time.perf_counter() - t0) * 1e3)
        text_ms = float(np.median(times))
        return {int(p.at): p.tail_ms + text_ms for p in self.profile(runs)}
