"""tc.split.profile and the cost model (tc.split.choose): arithmetic, rates, units, errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from ci_support import require

torch = require("torch")
torchvision = require("torchvision")

import taskcodec as tc  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def prof():
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(num_classes=10).eval()
    return tc.split.profile(model, torch.randn(1, 3, 64, 64), ["features.3", "features.13"],
                            runs=2)


def test_profile_records_each_cut(prof):
    records = list(prof)
    assert [r.at for r in records] == ["features.3", "features.13"]
    r = records[0]
    assert r.shape == (1, 24, 16, 16)
    assert (r.bytes_f32, r.bytes_f16) == (24 * 16 * 16 * 4, 24 * 16 * 16 * 2)
    assert r.head_ms > 0 and r.tail_ms > 0 and r.flops == r.head_flops + r.tail_flops > 0
    assert prof.input_bytes == 3 * 64 * 64 and prof.output_bytes == 10 * 4
    assert "features.13" in prof.table()


def test_choose_sums_the_parts_at_float_rates(prof):
    # A very slow link and a fast edge: the smallest upload should win among the splits, and
    # the total is exactly the sum of its parts. 1 kB/s = 1000 B/s: 1 byte takes 1 ms.
    link = tc.split.Link(up_kB_s=1.0, down_kB_s=1.0, latency_ms=5.0)
    choice = tc.split.choose(prof, link, codec_rates={"f16": 16, "tiny": 0.5},
                             edge_speedup=4.0, include_device_only=False)
    best = choice.best
    assert isinstance(best, tc.split.SplitOption)
    assert (choice.at, choice.bits) == (best.at, best.bits)
    assert best.bits == 0.5 and isinstance(best.bits, float) and best.name == "tiny"
    assert choice.expected_ms == pytest.approx(best.device_ms + best.transfer_ms + best.edge_ms)
    expect_up = next(c for c in prof if c.at == choice.at).bytes_f32 / 32 * 0.5
    assert best.bytes_up == pytest.approx(expect_up)
    assert best.transfer_ms == pytest.approx(5.0 + expect_up / 1.0 + 40 / 1.0)
    assert len(choice.options) == 1 + 2 * 2  # edge-only + 2 cuts x 2 rates
    text = choice.reasoning
    assert "chosen" in text and "edge-only" in text and "kB/s" in text
    assert "0.5 bits/element (tiny)" in text and "bits/elem" in choice.table()
    # An infinitely fast link makes the fastest compute placement win: edge-only with a
    # 1000x faster edge; the default rates are float32 and float16.
    fast = tc.split.choose(prof, tc.split.Link(1e12, 1e12), edge_speedup=1000.0)
    assert fast.at == tc.split.EDGE_ONLY and fast.bits is None
    assert {o.bits for o in fast.options if o.at == "features.3"} == {32.0, 16.0}


def test_rates_are_floats_carried_in_the_option(prof):
    """A sequence of bits, or CodecRate objects whose ``codec`` comes back in the option."""
    link = tc.split.Link(up_kB_s=1.0, down_kB_s=1.0)
    marker = object()
    per_cut = tc.split.choose(
        prof, link, codec_rates={"features.3": [2.0, tc.split.CodecRate(1.5, "c", marker)]},
        include_device_only=False, include_edge_only=False)
    assert [(o.at, o.bits) for o in per_cut.options] == [("features.3", 2.0),
                                                         ("features.3", 1.5)]
    assert per_cut.bits == 1.5 and per_cut.best.codec is marker and per_cut.best.name == "c"
    flat = tc.split.choose(prof, link, codec_rates=[3], include_device_only=False,
                           include_edge_only=False)
    assert {o.bits for o in flat.options} == {3.0} and len(flat.options) == 2


def test_units_are_kilobytes_of_1000_bytes():
    link = tc.split.Link(up_kB_s=250, down_kB_s=500, latency_ms=20)
    assert link.up_ms(250_000) == pytest.approx(1000.0)  # 250 kB at 250 kB/s: one second
    assert link.down_ms(500_000) == pytest.approx(1000.0)
    assert "kB/s" in tc.split.Link.__doc__ and "1000 B" in tc.split.Link.__doc__


def test_every_error_is_a_taskcodec_error(prof):
    with pytest.raises(tc.TaskcodecError, match="positive"):
        tc.split.Link(0, 1)
    with pytest.raises(tc.TaskcodecError, match="latency_ms"):
        tc.split.Link(1, 1, latency_ms=-1)
    with pytest.raises(tc.ArgumentTypeError, match="up_kB_s"):
        tc.split.Link("fast", 1)
    with pytest.raises(tc.TaskcodecError, match="bits per element"):
        tc.split.CodecRate(0.0)
    with pytest.raises(tc.ArgumentTypeError, match="taskcodec.split.profile"):
        tc.split.choose({"cuts": []}, tc.split.Link(1, 1))
    with pytest.raises(tc.ArgumentTypeError, match="Link"):
        tc.split.choose(prof, (250, 500))
    with pytest.raises(tc.ArgumentTypeError, match="mixes"):
        tc.split.choose(prof, tc.split.Link(1, 1), codec_rates={"a": 1.0, "features.3": [2.0]})
    with pytest.raises(tc.ArgumentTypeError):
        tc.split.choose(prof, tc.split.Link(1, 1), codec_rates="f16")
    with pytest.raises(tc.TaskcodecError, match="no option"):
        tc.split.choose(prof, tc.split.Link(1, 1), codec_rates={"nowhere": [1.0]},
                        include_device_only=False, include_edge_only=False)
    with pytest.raises(tc.TaskcodecError, match="positive"):
        tc.split.choose(prof, tc.split.Link(1, 1), edge_speedup=0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    with pytest.raises(tc.TaskcodecError, match="runs"):
        tc.split.profile(model, torch.randn(1, 4), [0], runs=0)
    with pytest.raises(tc.ArgumentTypeError, match="runs"):
        tc.split.profile(model, torch.randn(1, 4), [0], runs=1.5)
    with pytest.raises(tc.ArgumentTypeError, match="example"):
        tc.split.profile(model, [[1.0] * 4], [0])
    with pytest.raises(tc.TaskcodecError, match="candidate"):
        tc.split.profile(model, torch.randn(1, 4), [])


def test_split_never_imports_the_pipeline_or_the_apps():
    code = ("import sys, taskcodec.split\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('taskcodec.pipeline', "
            "'taskcodec.apps', 'taskcodec.zoo')))\n"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
