"""glTF confinement (`importers/gltfcheck.py`) without Blender, on files written here: only
data: URIs and files inside the job folder reach Blender's importer; anything else is replaced
(images) or refused (buffers), in one line."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gltfdoc import (
    bad_json,
    bin_length_too_big,
    first_chunk_bin,
    glb,
    json_length_too_big,
    json_nested_deeply,
    json_not_object,
    parse_glb,
    png,
    total_wrong,
    truncated,
    version_1,
)

from conjure_src.importers import gltfcheck
from conjure_src.importers.gltfcheck import GltfCheckError


def _doc(image_uris: list[str], buffer_uri: str | None = None) -> dict[str, Any]:
    buffer: dict[str, Any] = {"byteLength": 8}
    if buffer_uri is not None:
        buffer["uri"] = buffer_uri
    return {
        "asset": {"version": "2.0"},
        "buffers": [buffer],
        "images": [{"uri": uri} for uri in image_uris],
    }


def _decode_placeholder(uri: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    png = base64.b64decode(uri[len(prefix) :])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack_from(">II", png, 16)
    assert (width, height) == (1, 1)
    return png


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """A job folder holding a texture, with a PNG beside it (outside it)."""
    folder = tmp_path / "job"
    (folder / "sub").mkdir(parents=True)
    (folder / "tex.png").write_bytes(png(2, 2, (1, 2, 3)))
    (folder / "sub" / "tex a.png").write_bytes(png(2, 2, (1, 2, 3)))
    (tmp_path / "outside.png").write_bytes(png(3, 5, (9, 9, 9)))
    (tmp_path / "outside.bin").write_bytes(bytes(8))
    return folder


# ------------------------------------------------------------------------ gltfcheck (no bpy)


def test_data_and_inside_uris_leave_the_file_untouched(job: Path) -> None:
    data_png = "data:image/png;base64," + base64.b64encode(png(1, 1, (0, 0, 0))).decode()
    doc = _doc([data_png, "tex.png", "sub/tex%20a.png", "sub\\tex%20a.png", "./sub/../tex.png"])
    doc["buffers"][0]["uri"] = "data:application/octet-stream;base64,AAAAAAAAAAA="
    model = job / "m.glb"
    model.write_bytes(glb(doc, None))
    before = sorted(job.rglob("*"))

    assert gltfcheck.confine(str(model), str(job)) == (str(model), [])
    assert sorted(job.rglob("*")) == before  # nothing written


@pytest.mark.parametrize(
    "uri",
    [
        "/etc/hostname",
        "../outside.png",
        "sub/../../outside.png",
        "%2E%2E/outside.png",
        "..%2Foutside.png",
        "sub\\..\\..\\outside.png",
        "C:\\a\\b.png",
        "C:/a/b.png",
        "\\\\srv\\x.png",
        "//srv/x.png",
        "file:///etc/hostname",
        "FILE:../outside.png",
        "http://example.com/x.png",
        "missing.png",
        "data:image/png,../../outside.png",
    ],
)
def test_disallowed_image_uri_is_replaced_and_named(job: Path, uri: str) -> None:
    binary = bytes(range(13))  # odd length: the writer's padding must still come out right
    model = job / "m.glb"
    model.write_bytes(glb(_doc(["tex.png", uri]), binary))
    original_chunks = parse_glb(model.read_bytes())[1]

    path, warnings = gltfcheck.confine(str(model), str(job))

    assert path == str(job / "m.confined.glb")
    assert warnings == [warnings[0]] and f"'{uri}'" in warnings[0] and "\n" not in warnings[0]
    doc, chunks = parse_glb(Path(path).read_bytes())
    assert chunks == original_chunks  # BIN chunk byte for byte
    assert doc["images"][0] == {"uri": "tex.png"}
    _decode_placeholder(doc["images"][1]["uri"])
    assert model.read_bytes() == glb(_doc(["tex.png", uri]), binary)  # original kept


def test_symlink_in_the_job_folder_pointing_out_is_refused(job: Path) -> None:
    (job / "link.png").symlink_to(job.parent / "outside.png")
    (job / "linkdir").symlink_to(job.parent)
    model = job / "m.gltf"
    model.write_text(json.dumps(_doc(["link.png", "linkdir/outside.png", "tex.png"])))

    path, warnings = gltfcheck.confine(str(model), str(job))

    assert path == str(job / "m.confined.gltf")
    assert len(warnings) == 2 and "'link.png'" in warnings[0] and "outside" in warnings[0]
    doc = json.loads(Path(path).read_text())
    assert [i["uri"] == "tex.png" for i in doc["images"]] == [False, False, True]


def test_rewrite_replaces_a_symlink_at_the_target_instead_of_following_it(job: Path) -> None:
    victim = job.parent / "victim.txt"
    victim.write_text("keep")
    (job / "m.confined.gltf").symlink_to(victim)
    model = job / "m.gltf"
    model.write_text(json.dumps(_doc(["../outside.png"])))

    path, _ = gltfcheck.confine(str(model), str(job))

    assert victim.read_text() == "keep" and not Path(path).is_symlink()


@pytest.mark.parametrize(
    "uri", ["../outside.bin", "/etc/hostname", "C:\\a\\b.bin", "\\\\srv\\b.bin", "nope.bin"]
)
def test_disallowed_buffer_uri_is_an_error_naming_it(job: Path, uri: str) -> None:
    model = job / "m.gltf"
    model.write_text(json.dumps(_doc([], buffer_uri=uri)))
    with pytest.raises(GltfCheckError) as err:
        gltfcheck.confine(str(model), str(job))
    assert f"'{uri}'" in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in job.iterdir()) == ["m.gltf", "sub", "tex.png"]


@pytest.mark.parametrize(
    "corrupt",
    [
        truncated,
        json_length_too_big,
        bin_length_too_big,
        total_wrong,
        version_1,
        first_chunk_bin,
        bad_json,
        json_not_object,
        json_nested_deeply,
        lambda data: data[:10],
        lambda data: b"",
    ],
)
def test_corrupt_glb_is_a_one_line_error(job: Path, corrupt: Callable[[bytes], bytes]) -> None:
    model = job / "m.glb"
    model.write_bytes(corrupt(glb(_doc(["tex.png"]), bytes(16))))
    with pytest.raises(GltfCheckError) as err:
        gltfcheck.confine(str(model), str(job))
    assert str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "doc",
    [
        {"asset": {}, "images": {"uri": "x"}},
        {"asset": {}, "images": [{"uri": 5}]},
        {"buffers": [1]},
    ],
)
def test_malformed_uri_lists_are_errors(job: Path, doc: dict[str, Any]) -> None:
    model = job / "m.gltf"
    model.write_text(json.dumps(doc))
    with pytest.raises(GltfCheckError):
        gltfcheck.confine(str(model), str(job))


def test_model_outside_the_allowed_root_is_refused(job: Path) -> None:
    model = job.parent / "m.gltf"
    model.write_text(json.dumps(_doc([])))
    with pytest.raises(GltfCheckError, match="outside the job folder"):
        gltfcheck.confine(str(model), str(job))


def test_placeholder_is_a_valid_png() -> None:
    png = _decode_placeholder(gltfcheck.PLACEHOLDER_PNG_URI)
    offset = 8
    while offset < len(png):  # every chunk's CRC is right and IDAT holds one RGBA pixel
        (length,) = struct.unpack_from(">I", png, offset)
        kind, data = png[offset + 4 : offset + 8], png[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack_from(">I", png, offset + 8 + length)
        assert crc == zlib.crc32(kind + data)
        if kind == b"IDAT":
            assert len(zlib.decompress(data)) == 1 + 4
        offset += 12 + length
    assert offset == len(png)
