"""The five generation services, registered in one place. No bpy: worker threads and the
pure test suite import this package.

A service is one module (`trify3d.py`, …): its `INFO` facts and its Provider class. Adding
one is a new module and one line in `_BUILT`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import ravenra, siray, trify3d, triverse, voxelai
from .base import ErrorKind, ProviderError, ServiceInfo

if TYPE_CHECKING:
    from .base import Provider
    from .http import HttpClient

_BUILT: dict[str, type[Provider]] = {
    ravenra.INFO.id: ravenra.Ravenra,
    siray.INFO.id: siray.Siray,
    trify3d.INFO.id: trify3d.Trify3D,
    triverse.INFO.id: triverse.Triverse,
    voxelai.INFO.id: voxelai.VoxelAI,
}

PROVIDER_IDS: tuple[str, ...] = ("ravenra", "siray", "voxelai", "trify3d", "triverse")
SERVICES: dict[str, ServiceInfo] = {provider_id: cls.info for provider_id, cls in _BUILT.items()}
assert set(SERVICES) == set(PROVIDER_IDS)


def make_http(provider_id: str, api_key: str, base_url: str, **kw: Any) -> HttpClient:
    from .http import HttpClient

    info = SERVICES[provider_id]
    return HttpClient(
        api_key, base_url, auth_header=info.auth_header, auth_scheme=info.auth_scheme, **kw
    )


def get_provider(provider_id: str, http: HttpClient) -> Provider:
    """The implementation of one service; services not built yet fail with a clear message."""
    cls = _BUILT.get(provider_id)
    if cls is None:
        name = SERVICES[provider_id].name if provider_id in SERVICES else provider_id
        raise ProviderError(ErrorKind.BAD_REQUEST, f"{name} is not available in this version yet")
    return cls(http)
