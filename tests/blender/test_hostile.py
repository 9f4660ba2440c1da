"""Hostile files, served by an emulator as a paid job's model, through the whole add-on:
download, type sniffing, unpacking, Blender's own importers, the scene.

The file-handling layer is the same for every service once a file is downloaded, so one
emulator (Trify3D's, which serves whatever bytes it is given as the model) carries the corpus;
what only one service does (Ravenra's separate MTL, Voxel-AI's server-given filename) is in
that service's tests. Around the job folder sit canary files whose access time is set to
1970: any read of one moves it (the host mounts with relatime, checked first). After every
case: each canary unread and unchanged, no file written outside the job's own folder, the
job ended as the table says (imported, with warnings where something was left out; or
failed in one line, nothing of it in the scene), paid once.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import os
import stat
import struct
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from services import api, service

from conftest import ADDON_ID
from emulators.glb import triangle_glb
from emulators.ravenra import cube_mtl, cube_obj
from emulators.trify3d import Trify3DEmulator, tiny_png

KEY = "trf_live_S3CRET-hostile-17"
PNG = tiny_png((200, 10, 10))


def _zip(*members: tuple[str | zipfile.ZipInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore")  # "Duplicate name": that case means it
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def _special(name: str, kind: int, data: bytes = b"") -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (kind | 0o644) << 16
    return info, data


def _bomb(size: int) -> bytes:
    """One member that inflates to `size` zero bytes (about a thousandth of that on the wire)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.obj", cube_obj())
        with archive.open("texture.png", "w", force_zip64=True) as member:
            block = bytes(1 << 20)
            for _ in range(size >> 20):
                member.write(block)
    return buffer.getvalue()


def _many(count: int) -> bytes:
    return _zip(("model.obj", cube_obj()), *((f"t/{i}.png", b"") for i in range(count)))


def _mtl_naming(*paths: str) -> bytes:
    lines = ["newmtl CubeSkin", "Kd 0.8 0.8 0.8"]
    lines += [f"map_{slot} {path}" for slot, path in zip(("Kd", "Ks", "Bump", "d", "Ns"), paths, strict=True)]
    return ("\n".join(lines) + "\n").encode()


def _many_materials(count: int) -> bytes:
    lines = [f"newmtl M{i}\nKd 0.5 0.5 0.5" for i in range(count)]
    return ("\n".join(lines) + "\n" + cube_mtl(texture=None).decode()).encode()


def _gltf(images: list[dict], buffers: list[dict] | None = None) -> bytes:
    """A glTF (JSON) triangle whose buffer and images say what the case needs."""
    glb = triangle_glb("HostileTriangle")
    length = struct.unpack_from("<I", glb, 12)[0]
    doc = json.loads(glb[20 : 20 + length])
    doc["buffers"] = buffers or [{"uri": "triangle.bin", "byteLength": doc["buffers"][0]["byteLength"]}]
    if images:
        doc["images"] = images
        doc["textures"] = [{"source": i} for i in range(len(images))]
    return json.dumps(doc).encode()


def _gltf_bundle(images: list[dict], buffers: list[dict] | None = None) -> bytes:
    glb = triangle_glb("HostileTriangle")
    json_length = struct.unpack_from("<I", glb, 12)[0]
    binary = glb[20 + json_length + 8 :]
    return _zip(("scene.gltf", _gltf(images, buffers)), ("triangle.bin", binary))


Corpus = Callable[[dict[str, Path]], bytes]
# (id, the model's bytes given the canaries' paths, "" to import or the failure's words,
#  words every warning list must hold when it imports)
CORPUS: tuple[tuple[str, Corpus, str, str], ...] = (
    ("zip-climbs-out", lambda c: _zip(("model.obj", cube_obj()), ("../../escape.png", PNG)),
     "climbs out", ""),
    ("zip-absolute-path", lambda c: _zip(("model.obj", cube_obj()), (str(c["beside"]), PNG)),
     "absolute path", ""),
    ("zip-drive-path", lambda c: _zip(("model.obj", cube_obj()), ("C:\\Windows\\x.png", PNG)),
     "absolute path", ""),
    ("zip-symlink", lambda c: _zip(("model.obj", cube_obj()),
                                   _special("cube.mtl", stat.S_IFLNK, str(c["beside"]).encode())),
     "symbolic link", ""),
    ("zip-device", lambda c: _zip(("model.obj", cube_obj()), _special("dev", stat.S_IFCHR)),
     "not a regular file", ""),
    ("zip-duplicate-names", lambda c: _zip(("model.obj", cube_obj()), ("model.obj", cube_obj())),
     "appears twice", ""),
    ("zip-10000-members", lambda c: _many(10_000), "more than the 2000 allowed", ""),
    ("zip-1GiB-inflate", lambda c: _bomb((1 << 30) + (1 << 20)), "byte limit", ""),
    ("mtl-naming-outside", lambda c: _zip(
        ("model.obj", cube_obj()),
        ("cube.mtl", _mtl_naming(str(c["beside"]), "C:\\Users\\me\\skin.png", "..\\..\\canary.png",
                                 "\\\\server\\share\\skin.png", "/etc/passwd"))),
     "", "left out"),
    ("mtl-100k-materials", lambda c: _zip(("model.obj", cube_obj()), ("cube.mtl", _many_materials(100_000))),
     "", ""),
    ("gltf-uris-outside", lambda c: _gltf_bundle([
        {"uri": "../../canary.png"}, {"uri": f"file://{c['beside']}"}, {"uri": str(c["beside"])}]),
     "", "left out"),
    ("gltf-data-uri-lies", lambda c: _gltf_bundle([
        {"uri": "data:image/png;base64," + base64.b64encode(b"<html>not a png</html>").decode()}]),
     "", ""),
    ("gltf-buffer-outside", lambda c: _gltf_bundle([], [{"uri": "../../canary.png", "byteLength": 64}]),
     "outside", ""),
    ("glb-that-is-not-gltf", lambda c: b"glTF" + struct.pack("<II", 2, 60) + os.urandom(48),
     "glb", ""),
)  # fmt: skip


@pytest.fixture
def trify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Trify3DEmulator]:
    model = tmp_path / "model.glb"
    model.write_bytes(triangle_glb("Plain"))
    emulator = Trify3DEmulator(model, api_key=KEY, rate_limit=100_000)
    with service(monkeypatch, "trify3d", emulator, KEY, cancel_live=True) as emu:
        yield emu


def _relatime_works(folder: Path) -> bool:
    probe = folder / "atime-probe"
    probe.write_bytes(b"probe")
    os.utime(probe, (0, probe.stat().st_mtime))
    probe.read_bytes()
    return probe.stat().st_atime > 0


@pytest.fixture
def canaries(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """Files beside and above the jobs folder that no job may read or change (taken away
    afterwards: the add-on's folder is shared by the tests)."""
    root = Path(importlib.import_module(f"{ADDON_ID}.runtime").get().root)
    places = {
        "jobs": root / "jobs" / "canary.png",  # ../canary.png from a job folder
        "root": root / "canary.png",  # ../../canary.png
        "beside": tmp_path / "canary.png",  # an absolute path elsewhere
    }
    for path in places.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(PNG)
        os.utime(path, (0, path.stat().st_mtime))
    yield places
    for path in places.values():
        path.unlink(missing_ok=True)


def _files(*folders: Path) -> set[Path]:
    return {p for folder in folders for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(("served", "failure", "warned"), [c[1:] for c in CORPUS],
                         ids=[c[0] for c in CORPUS])  # fmt: skip
def test_a_hostile_model(
    scene, trify, canaries, tmp_path, served: Corpus, failure: str, warned: str
) -> None:
    import bpy

    root = Path(importlib.import_module(f"{ADDON_ID}.runtime").get().root)
    if not _relatime_works(tmp_path):
        pytest.skip("this file system does not record reads (noatime): canaries cannot tell")
    trify.model_bytes = served(canaries)
    before = _files(root, tmp_path)
    objects = set(bpy.data.objects)
    job_id = api().submit("trify3d", prompt="a hostile box")
    status = api().wait(job_id, 120)[job_id]
    if failure:
        assert status["state"] == "failed", status
        message = str(status["message"])
        assert failure.lower() in message.lower() and "\n" not in message, message
        assert set(bpy.data.objects) == objects  # nothing half-imported
    else:
        assert status["state"] == "imported", status
        assert set(bpy.data.objects) - objects
        if warned:
            assert any(warned in w for w in status["warnings"]), status["warnings"]
    for name, path in canaries.items():
        assert path.stat().st_atime == 0, f"the {name} canary was read"
        assert path.read_bytes() == PNG
    job_folder = root / "jobs" / job_id
    written = {p for p in _files(root, tmp_path) - before if not p.is_relative_to(job_folder)}
    assert {p.name for p in written} <= {"journal.sqlite-wal", "journal.sqlite-shm"}, written
    assert trify.count("POST") == 1 and trify.charges == 1
