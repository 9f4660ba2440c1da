"""The five generation services: static facts shared by preferences, operators and engine.

No bpy here: worker threads and the pure test suite import this package.
"""

from __future__ import annotations

from dataclasses import dataclass

PROVIDER_IDS: tuple[str, ...] = ("ravenra", "siray", "voxelai", "trify3d", "triverse")


@dataclass(frozen=True)
class ServiceInfo:
    id: str
    name: str
    default_base_url: str
    key_page_url: str
    description: str

    @property
    def env_key(self) -> str:
        return f"CONJURE_{self.id.upper()}_API_KEY"

    @property
    def env_base_url(self) -> str:
        return f"CONJURE_{self.id.upper()}_BASE_URL"


SERVICES: dict[str, ServiceInfo] = {
    info.id: info
    for info in (
        ServiceInfo(
            "ravenra",
            "Ravenra",
            "https://api.ravenra.io",
            "https://dashboard.ravenra.io/api-dashboard",
            "Text or image to textured OBJ",
        ),
        ServiceInfo(
            "siray",
            "Siray",
            "https://api.siray.ai",
            "https://siray.ai/dashboard/api-keys",
            "Hosted Hunyuan3D / Tripo models",
        ),
        ServiceInfo(
            "voxelai",
            "Voxel-AI",
            "https://voxelai.studio",
            "https://voxelai.studio/account",
            "Text to candidate images to MagicaVoxel",
        ),
        ServiceInfo(
            "trify3d",
            "Trify3D",
            "https://trify3d.com",
            "https://trify3d.com/api-keys",
            "Text, image or multiview to GLB",
        ),
        ServiceInfo(
            "triverse",
            "Triverse",
            "https://api.triverse.ai/api/v1",
            "https://triverse.ai/api-keys",
            "Image or text to GLB",
        ),
    )
}
