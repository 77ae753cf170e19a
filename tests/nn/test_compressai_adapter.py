"""tc.nn.use_taskcodec: a CompressAI model codes through taskcodec and decodes identically."""

from __future__ import annotations

import pytest
from ci_support import require

torch = require("torch")
require("compressai")

import taskcodec as tc  # noqa: E402

torch.set_num_threads(1)


def test_scale_hyperprior_round_trips_identically():
    from compressai.models import ScaleHyperprior

    torch.manual_seed(0)
    net = ScaleHyperprior(N=32, M=48).eval()
    net.update(force=True)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ref = net.compress(x)
        ref_hat = net.decompress(ref["strings"], ref["shape"])["x_hat"]
        assert tc.nn.use_taskcodec(net) is net
        tc.nn.use_taskcodec(net)  # idempotent
        out = net.compress(x)
        # Every string is now a taskcodec frame, coded with CompressAI's own tables.
        for strings in out["strings"]:
            assert len(strings) == 2 and all(s[:4] == b"TCDC" for s in strings)
        table = net.gaussian_conditional.taskcodec_table()
        assert tc.read_header(out["strings"][0][0]).fingerprint == table.fingerprint
        hat = net.decompress(out["strings"], out["shape"])["x_hat"]
    assert torch.equal(hat, ref_hat)


def test_gaussian_conditional_escapes_exactly():
    from compressai.entropy_models import GaussianConditional

    gc = GaussianConditional(None)
    gc.update_scale_table(torch.exp(torch.linspace(-2, 3, 16)))
    gc.update()
    tc.nn.use_taskcodec(gc)
    torch.manual_seed(0)
    y = torch.randn(2, 4, 8, 8) * 5
    y[0, 0, 0, 0] = 1e4  # far outside every table: escaped, still exact
    scales = torch.rand(2, 4, 8, 8) * 3
    idx = gc.build_indexes(scales)
    strings = gc.compress(y, idx)
    assert torch.equal(gc.decompress(strings, idx), torch.round(y))
    with pytest.raises(ValueError):
        gc.compress(y, idx[:, :2])


def test_requires_update_and_entropy_models():
    from compressai.entropy_models import EntropyBottleneck

    eb = tc.nn.use_taskcodec(EntropyBottleneck(4))
    with pytest.raises(tc.TaskcodecError, match="update"):
        eb.compress(torch.zeros(1, 4, 2, 2))
    with pytest.raises(TypeError):
        tc.nn.use_taskcodec(torch.nn.Linear(2, 2))
