"""``taskcodec.zoo``: lazy loading, photos by name or path, image bytes, codec calibrations."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from ci_support import require

import taskcodec as tc


def test_importing_the_zoo_loads_no_torch() -> None:
    code = ("import sys, taskcodec.zoo as z; z.photos; z.images; z.models; z.runtimes; "
            "assert 'torch' not in sys.modules and 'PIL' not in sys.modules, 'heavy import'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_missing_files_and_unknown_names_are_clear(tmp_path) -> None:
    from taskcodec.zoo.photos import load_photo, resolve_photo

    path = tmp_path / "nope.jpg"
    with pytest.raises(tc.MissingDataError, match="does not exist") as info:
        load_photo(path)
    assert str(path) in str(info.value)
    with pytest.raises(tc.MissingDataError, match="is a directory"):
        resolve_photo(str(tmp_path) + "/")
    require("skimage")
    with pytest.raises(tc.MissingDataError, match="no scikit-image photo"):
        resolve_photo("not_a_photo")
    assert resolve_photo("chelsea") == "chelsea"


def test_photos_by_name_and_by_path_agree(tmp_path) -> None:
    require("skimage")
    require("PIL")
    from taskcodec.zoo.images import decode_jpeg, encode_jpeg
    from taskcodec.zoo.photos import CALIBRATION_PHOTOS, EVALUATION_PHOTOS, load_photo

    assert not set(CALIBRATION_PHOTOS) & set(EVALUATION_PHOTOS)
    cat = load_photo("chelsea")
    assert cat.dtype == np.uint8 and cat.ndim == 3 and cat.shape[2] == 3
    assert load_photo("camera").shape[2] == 3  # grey, replicated
    file = tmp_path / "cat.jpg"
    file.write_bytes(encode_jpeg(cat, quality=95))
    from_file = load_photo(str(file))
    assert from_file.shape == cat.shape
    assert np.abs(from_file.astype(int) - cat).mean() < 4
    with pytest.raises(tc.BadInputError, match="not a readable image"):
        decode_jpeg(b"\xff\xd8\xff not really")


def test_codec_calibration_travels_as_json() -> None:
    torch = require("torch")
    from taskcodec.zoo.runtimes import CodecCalibration, decode_feature

    x = torch.randn(8, 4, 5, 5, generator=torch.Generator().manual_seed(0))
    codec = tc.nn.FeatureCodec.calibrate(x, step_per_std=0.5)
    cal = CodecCalibration(3, 0.5, codec, (4, 5, 5), 123.0, 0.75)
    back = CodecCalibration.from_json(json.loads(json.dumps(cal.to_json())))
    assert (back.at, back.rate, back.shape, back.mean_bytes, back.agreement) == \
        (3, 0.5, (4, 5, 5), 123.0, 0.75)
    assert back.codec.fingerprint == codec.fingerprint
    frame = codec.compress(x[:1])
    torch.testing.assert_close(decode_feature(back.codec, frame, back.shape),
                               codec.decompress(frame))
    with pytest.raises(tc.BadInputError, match="expects"):
        decode_feature(back.codec, frame, (4, 5, 6))
    with pytest.raises(tc.BadInputError, match="not a codec calibration"):
        CodecCalibration.from_json({"at": 3})
