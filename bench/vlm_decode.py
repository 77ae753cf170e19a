"""The edge's text side of the scene BLIP, against ``transformers``: captions and answers
decoded by :class:`taskcodec.zoo.blip_decode.StepDecoder` (one token a step, keys and values
kept) and by ``transformers``' own forward over the whole prefix at each step
(:func:`~taskcodec.zoo.blip_decode.reference_greedy`). One image or question at a time, as a
request comes, on ``--threads`` torch threads; medians of ``--runs`` runs, the two sides
alternating; the two must give the same tokens.

    python bench/vlm_decode.py [--runs 30] [--threads 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import describe_machine, machine_summary  # noqa: E402


def median_ms(fns: Dict[str, Callable[[], Any]], runs: int) -> Dict[str, float]:
    """Median ms of each function, run in turn ``runs`` times (after one warm-up each)."""
    times: Dict[str, list] = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(runs):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: Any = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.runs < 1 or args.threads < 1:
        ap.error("--runs and --threads must be at least 1")

    import torch

    from taskcodec.zoo import scenes, vlm
    from taskcodec.zoo.blip_decode import StepDecoder, reference_greedy

    torch.set_num_threads(args.threads)
    captioner, vqa = vlm.load_blip()
    tok = vlm.tokenizer()
    scene = scenes.scene(0, "test", 1)
    x = vlm.pixels(scene.image)
    with torch.inference_mode():
        image = vqa.vision_model(pixel_values=x).last_hidden_state
        ids, mask, _ = vlm.question_ids([scene.qa[0][0]])
        question = vlm.question_states(vqa, image, ids, mask)
    ends = (tok.sep_token_id, tok.pad_token_id)
    rows = {}
    for name, decoder, states, m, steps in (
            ("caption", captioner.text_decoder, image, torch.ones(image.shape[:2]), 20),
            ("answer", vqa.text_decoder, question, mask, 4)):
        bos = decoder.config.bos_token_id
        fns = {"transformers": lambda: reference_greedy(decoder, states, m, steps, bos, *ends),
               "taskcodec": lambda: StepDecoder(decoder).greedy(states, m, steps, bos, *ends)}
        tokens = fns["taskcodec"]()
        if not torch.equal(tokens, fns["transformers"]()):
            raise SystemExit(f"{name}: the two decoders gave different tokens")
        rows[name] = {**median_ms(fns, args.runs), "tokens": int(tokens.shape[1] - 1)}
    print(f"{'':20} {'transformers ms':>15} {'StepDecoder ms':>15} {'speed-up':>9}")
    for name, r in rows.items():
        print(f"{name + ' (' + str(r['tokens']) + ' tokens)':20} {r['transformers']:15.2f} "
              f"{r['taskcodec']:15.2f} {r['transformers'] / r['taskcodec']:8.2f}x")
    machine = describe_machine()
    print(machine_summary(machine))
    if args.json:
        args.json.write_text(json.dumps({"runs": args.runs, "threads": args.threads,
                                         "rows": rows, "machine": machine}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
