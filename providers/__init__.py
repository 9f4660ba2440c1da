"""The five generation services: static facts shared by preferences, operators and engine.

No bpy here: worker threads and the pure test suite import this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Provider
    from .http import HttpClient

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


# Header and scheme each service expects its key in (PROVIDERS.md).
AUTH_HEADERS: dict[str, tuple[str, str]] = {
    "ravenra": ("x-api-key", ""),
    "siray": ("Authorization", "Bearer"),
    "voxelai": ("Authorization", "Bearer"),
    "trify3d": ("Authorization", "Bearer"),
    "triverse": ("Authorization", "Bearer"),
}


def make_http(provider_id: str, api_key: str, base_url: str, **kw: object) -> HttpClient:
    from .http import HttpClient

    header, scheme = AUTH_HEADERS[provider_id]
    return HttpClient(api_key, base_url, auth_header=header, auth_scheme=scheme, **kw)


def get_provider(provider_id: str, http: HttpClient) -> Provider:
    """The implementation of one service; services not built yet fail with a clear message."""
    from .base import ErrorKind, ProviderError

    if provider_id == "trify3d":
        from .trify3d import Trify3D

        return Trify3D(http)
    name = SERVICES[provider_id].name if provider_id in SERVICES else provider_id
    raise ProviderError(ErrorKind.BAD_REQUEST, f"{name} is not available in this version yet")
