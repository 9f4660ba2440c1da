"""In real Blender: its OBJ importer opens nothing outside the job folder (issue #20, finding
12), even for texture paths hidden behind options (`map_Kd -o /abs/x.png` is a path to
Blender) or in the `<obj name>.mtl` it reads beside the OBJ when no `mtllib` names it. Blender
reports every image file it tries; the canary beside the job folder must never be among them.
"""

from __future__ import annotations

import importlib
import io
import os
import zipfile
from pathlib import Path

from blenddata import target_collection

from emulators.ravenra import cube_obj
from emulators.trify3d import tiny_png


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


def test_blender_opens_no_texture_outside_the_job_folder(scene, addon, tmp_path, capfd) -> None:
    import bpy

    obj = importlib.import_module(f"{addon.__name__}.importers.obj")
    canary = tmp_path / "jobs" / "secret.png"
    job = tmp_path / "jobs" / "job1"
    job.mkdir(parents=True)
    canary.write_bytes(tiny_png())
    (job / "texture.png").write_bytes(tiny_png())
    hostile = (
        f"newmtl CubeSkin\nmap_Kd -o {canary}\nmap_Bump -bm +{canary}\nmap_Ks -s 1 {canary}\n"
    )
    model = cube_obj().replace(b"mtllib cube.mtl\n", b"")  # no mtllib: Blender reads cube.mtl
    (job / "model.zip").write_bytes(_zip({"cube.obj": model, "cube.mtl": hostile.encode()}))
    capfd.readouterr()
    result = obj.import_obj(str(job / "model.zip"), target_collection(scene), (0, 0, 0), str(job))
    printed = capfd.readouterr()
    assert str(canary) not in printed.out + printed.err  # never even tried
    assert len(result.objects) == 1
    assert f"texture '{canary}' not found among the downloaded files; left out" in result.warnings
    for image in bpy.data.images:
        if image.source == "FILE":
            path = os.path.realpath(bpy.path.abspath(image.filepath))
            assert Path(path).is_relative_to(job.resolve()), path
