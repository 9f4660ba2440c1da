"""OBJ import in real Blender: the installed add-on's `importers.obj` on the OBJ/MTL/texture
files in ../shared/fixtures/obj (written by Blender 2.82, Meshlab and others, not by us) and
on the Ravenra emulator's cube with hostile material files.

Checked: objects land in the target collection at the given location, materials carry an
Image Texture node whose image has pixels and is packed, no image comes from outside the
allowed root, what was left out is named, and a failed import leaves no data-block behind.
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from blenddata import data_names
from blenddata import target_collection as _target

from conftest import fixture_path
from emulators.ravenra import cube_mtl, cube_obj, hostile_mtl, texture_zip
from emulators.trify3d import tiny_png

KINDS = ("objects", "meshes", "materials", "images", "collections", "textures", "node_groups")


def _obj(addon: ModuleType) -> ModuleType:
    return importlib.import_module(f"{addon.__name__}.importers.obj")


def _names() -> dict[str, set[str]]:
    return data_names(KINDS)


def _job(tmp_path: Path, files: dict[str, bytes | Path]) -> Path:
    """A job folder holding `files` (bytes, or a fixture to copy), as the engine leaves it."""
    folder = tmp_path / "jobs" / "job1"
    folder.mkdir(parents=True)
    for name, content in files.items():
        if isinstance(content, Path):
            shutil.copyfile(content, folder / name)
        else:
            (folder / name).write_bytes(content)
    return folder


def _inside(path: str, root: Path) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([real, top]) == top


def _textures(objects: list[Any]) -> dict[str, list[Any]]:
    """Material name → the images of its Image Texture nodes."""
    found: dict[str, list[Any]] = {}
    for obj in objects:
        for material in obj.data.materials:
            nodes = material.node_tree.nodes if material and material.node_tree else []
            images = [n.image for n in nodes if n.type == "TEX_IMAGE" and n.image is not None]
            found.setdefault(material.name, []).extend(images)
    return found


def _assert_all_images_safe(root: Path) -> None:
    """Every image in the file is packed and was read from inside `root`."""
    import bpy

    for image in bpy.data.images:
        if image.source != "FILE":
            continue
        assert image.packed_file is not None, image.name
        assert _inside(bpy.path.abspath(image.filepath), root), image.filepath


def _has_pixels(image: Any) -> bool:
    import numpy as np

    width, height = image.size
    if width == 0 or height == 0:
        return False
    pixels = np.empty(width * height * image.channels, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    return bool(np.any(pixels[0::4] > 0) or np.any(pixels[1::4] > 0))


# ----------------------------------------------------------------- real files from outside


def test_box_with_two_untextured_materials(scene, addon, tmp_path) -> None:
    job = _job(
        tmp_path,
        {"box.obj": fixture_path("obj", "box.obj"), "box.mtl": fixture_path("obj", "box.mtl")},
    )
    target = _target(scene)
    result = _obj(addon).import_obj(str(job / "box.obj"), target, (1.0, 2.0, 3.0), str(job))
    assert [o.name for o in result.objects] == ["Cube"] and result.warnings == []
    cube = result.objects[0]
    assert list(cube.users_collection) == [target]
    assert tuple(cube.location) == pytest.approx((1.0, 2.0, 3.0))
    assert len(cube.data.vertices) == 8 and len(cube.data.polygons) == 6
    assert sorted(m.name for m in cube.data.materials) == ["Material", "SecondMaterial"]
    assert _textures(result.objects) == {"Material": [], "SecondMaterial": []}


def test_capsule_with_a_jpeg_texture_is_packed(scene, addon, tmp_path) -> None:
    import bpy

    names = ("capsule.obj", "capsule.mtl", "capsule0.jpg")
    job = _job(tmp_path, {n: fixture_path("obj", n) for n in names})
    result = _obj(addon).import_obj(str(job / "capsule.obj"), _target(scene), (0, 0, 0), str(job))
    assert result.warnings == []
    (image,) = _textures(result.objects)["material0"]
    assert tuple(image.size) == (2048, 1024) and _has_pixels(image)
    assert image.packed_file is not None and image.packed_file.size == os.path.getsize(
        job / "capsule0.jpg"
    )
    _assert_all_images_safe(job)
    shutil.rmtree(job)  # the .blend no longer needs the job folder
    image.reload()
    assert _has_pixels(image)
    assert len(bpy.data.images) == 1


def test_fuze_texture_name_with_a_space_as_shipped(scene, addon, tmp_path) -> None:
    """The MTL says `fuze uv.jpg` and the file is called that: used as it is."""
    names = ("fuze.obj", "fuze.obj.mtl", "fuze uv.jpg")
    job = _job(tmp_path, {n: fixture_path("obj", n) for n in names})
    mtl_before = (job / "fuze.obj.mtl").read_bytes()
    result = _obj(addon).import_obj(str(job / "fuze.obj"), _target(scene), (0, 0, 0), str(job))
    assert result.warnings == []
    (image,) = _textures(result.objects)["a-super-duper-material"]
    assert tuple(image.size) == (1024, 1024) and _has_pixels(image)
    assert os.path.basename(image.filepath) == "fuze uv.jpg"
    assert (job / "fuze.obj.mtl").read_bytes() == mtl_before  # nothing needed rewriting
    _assert_all_images_safe(job)


def test_fuze_as_the_engine_names_it_with_a_zipped_texture(scene, addon, tmp_path) -> None:
    """model.obj says `mtllib ./fuze.obj.mtl`, the MTL came as material-1.mtl and names
    `fuze uv.jpg`, the zip holds `fuze_uv.jpg` (and a different MTL)."""
    job = _job(
        tmp_path,
        {
            "model.obj": fixture_path("obj", "fuze.obj"),
            "material-1.mtl": fixture_path("obj", "fuze.obj.mtl"),
            "texture-2.zip": fixture_path("obj", "fuze.zip"),
        },
    )
    target = _target(scene)
    result = _obj(addon).import_obj(str(job / "model.obj"), target, (0, 0, 5), str(job))
    assert result.warnings == []
    assert set(target.objects) == set(result.objects) and len(result.objects) == 1
    assert result.objects[0].location.z == pytest.approx(5)
    (image,) = _textures(result.objects)["a-super-duper-material"]
    assert os.path.basename(image.filepath) == "fuze_uv.jpg" and _has_pixels(image)
    assert _inside(image.filepath, job / "texture-2-files")
    assert b"map_Kd texture-2-files/fuze_uv.jpg" in (job / "material-1.mtl").read_bytes()
    assert (job / "model.obj").read_bytes() == fixture_path("obj", "fuze.obj").read_bytes()
    _assert_all_images_safe(job)


def test_a_zipped_model_is_extracted_and_imported(scene, addon, tmp_path) -> None:
    job = _job(tmp_path, {"model.zip": fixture_path("obj", "fuze.zip")})
    result = _obj(addon).import_obj(str(job / "model.zip"), _target(scene), (0, 0, 0), str(job))
    assert result.warnings == [] and len(result.objects) == 1
    (image,) = _textures(result.objects)["material_0"]
    assert _has_pixels(image) and image.packed_file is not None
    _assert_all_images_safe(job)


# ------------------------------------------------------------- the emulator's files, hostile


def test_ravenra_cube_with_png_download_uses_it_for_the_diffuse_map(scene, addon, tmp_path) -> None:
    """The OBJ names `cube.mtl`, the MTL names `cube_diffuse.png`; the engine saved them as
    material-1.mtl and texture-2.png."""
    job = _job(
        tmp_path,
        {"model.obj": cube_obj(), "material-1.mtl": cube_mtl(), "texture-2.png": tiny_png()},
    )
    result = _obj(addon).import_obj(str(job / "model.obj"), _target(scene), (0, 0, 0), str(job))
    assert result.warnings == []
    (image,) = _textures(result.objects)["CubeSkin"]
    assert os.path.basename(image.filepath) == "texture-2.png" and tuple(image.size) == (2, 2)
    assert _has_pixels(image)
    _assert_all_images_safe(job)


def test_hostile_mtl_with_a_zip_bundle(scene, addon, tmp_path) -> None:
    import bpy

    job = _job(
        tmp_path,
        {
            "model.obj": cube_obj(),
            "material-1.mtl": hostile_mtl(),
            "texture-2.zip": texture_zip(tiny_png()),
        },
    )
    result = _obj(addon).import_obj(str(job / "model.obj"), _target(scene), (0, 0, 0), str(job))
    assert result.warnings == [
        "texture '/etc/passwd' not found among the downloaded files; left out",
        "texture '../x.png' not found among the downloaded files; left out",
    ]
    images = _textures(result.objects)["CubeSkin"]
    assert images and {os.path.basename(i.filepath) for i in images} == {"cube_diffuse.png"}
    assert len(bpy.data.images) == 1
    _assert_all_images_safe(job)


def test_mtl_pointing_outside_gets_warnings_and_no_image(scene, addon, tmp_path) -> None:
    import bpy

    outside = tmp_path / "secret.png"
    outside.write_bytes(tiny_png())
    mtl = "\r\n".join(
        [
            "newmtl CubeSkin",
            "map_Kd /etc/passwd",
            f"map_Ks {outside}",
            "map_Bump -bm 1 C:\\Users\\x\\secret.png",
            "map_d ../secret.png",
            "",
        ]
    )
    job = _job(tmp_path, {"model.obj": cube_obj(), "material-1.mtl": mtl.encode()})
    result = _obj(addon).import_obj(str(job / "model.obj"), _target(scene), (0, 0, 0), str(job))
    assert result.warnings == [
        f"texture '{path}' not found among the downloaded files; left out"
        for path in ("/etc/passwd", str(outside), "C:\\Users\\x\\secret.png", "../secret.png")
    ]
    assert len(result.objects) == 1 and _textures(result.objects) == {"CubeSkin": []}
    assert len(bpy.data.images) == 0


def test_a_texture_that_is_not_an_image_is_left_out(scene, addon, tmp_path) -> None:
    import bpy

    job = _job(
        tmp_path,
        {
            "model.obj": cube_obj(),
            "material-1.mtl": cube_mtl(),
            "texture-2.png": b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4,
        },
    )
    result = _obj(addon).import_obj(str(job / "model.obj"), _target(scene), (0, 0, 0), str(job))
    assert result.warnings == ["texture 'texture-2.png' could not be read as an image; left out"]
    assert len(result.objects) == 1 and len(bpy.data.images) == 0


# --------------------------------------------------------------------------- all or nothing


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x01\x02 binary junk \xff\xfe",
        b"mtllib m.mtl\no Broken\nusemtl Skin\nf 1 2 3\nf 4 5 6\n",  # no vertices at all
        b"",
    ],
)
def test_broken_obj_is_one_line_and_leaves_nothing(scene, addon, tmp_path, content) -> None:
    obj = _obj(addon)
    job = _job(tmp_path, {"model.obj": content, "material-1.mtl": cube_mtl()})
    target = _target(scene)
    before = _names()
    with pytest.raises(obj.ObjImportError) as err:
        obj.import_obj(str(job / "model.obj"), target, (0, 0, 0), str(job))
    assert "\n" not in str(err.value) and str(err.value)
    assert _names() == before and len(target.objects) == 0


def test_failure_after_the_importer_ran_removes_everything(
    scene, addon, tmp_path, monkeypatch
) -> None:
    """The importer made an object, mesh, material and image; a later step fails: all go."""
    obj = _obj(addon)
    job = _job(
        tmp_path,
        {"model.obj": cube_obj(), "material-1.mtl": cube_mtl(), "texture-2.png": tiny_png()},
    )
    target = _target(scene)
    before = _names()
    made: dict[str, set[str]] = {}

    def fail(snapshot: Any, root: str) -> list[str]:
        made.update(_names())
        raise RuntimeError("disk full\nsecond line")

    monkeypatch.setattr(obj, "_settle_images", fail)
    with pytest.raises(obj.ObjImportError) as err:
        obj.import_obj(str(job / "model.obj"), target, (0, 0, 0), str(job))
    assert str(err.value) == "RuntimeError: second line"
    for kind in ("objects", "meshes", "materials", "images"):
        assert made[kind] - before[kind], f"the importer made no {kind}: the test proves nothing"
    assert _names() == before and len(target.objects) == 0


def test_model_outside_the_allowed_root_is_refused(scene, addon, tmp_path) -> None:
    obj = _obj(addon)
    job = _job(tmp_path, {"model.obj": cube_obj()})
    before = _names()
    with pytest.raises(obj.ObjImportError, match="not in the job folder"):
        obj.import_obj(str(job / "model.obj"), _target(scene), (0, 0, 0), str(tmp_path / "x"))
    assert _names()["objects"] == before["objects"]


def test_unsafe_texture_zip_fails_before_blender_reads_anything(scene, addon, tmp_path) -> None:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../escaped.png", tiny_png())
    obj = _obj(addon)
    job = _job(
        tmp_path,
        {"model.obj": cube_obj(), "material-1.mtl": cube_mtl(), "texture-2.zip": buffer.getvalue()},
    )
    before = _names()
    with pytest.raises(obj.ObjImportError, match="climbs out"):
        obj.import_obj(str(job / "model.obj"), _target(scene), (0, 0, 0), str(job))
    assert _names()["objects"] == before["objects"]
    assert not any(p.name == "escaped.png" for p in tmp_path.rglob("*"))


def test_images_from_outside_are_removed_even_if_the_mtl_was_not_confined(
    scene, addon, tmp_path, monkeypatch
) -> None:
    """Defence in depth: with confinement switched off, Blender opens the absolute paths;
    the check after the import still removes every image from outside the job folder."""
    import bpy

    obj = _obj(addon)
    outside = tmp_path / "secret.png"
    outside.write_bytes(tiny_png())
    mtl = f"newmtl CubeSkin\nmap_Kd {outside}\nmap_Bump /etc/passwd\n"
    job = _job(tmp_path, {"model.obj": cube_obj(), "material-1.mtl": mtl.encode()})
    monkeypatch.setattr(obj.mtl, "confine_textures", lambda *args: [])
    result = obj.import_obj(str(job / "model.obj"), _target(scene), (0, 0, 0), str(job))
    assert "texture 'secret.png' is outside the job folder; left out" in result.warnings
    assert len(result.objects) == 1 and _textures(result.objects) == {"CubeSkin": []}
    assert [i.filepath for i in bpy.data.images] == []
