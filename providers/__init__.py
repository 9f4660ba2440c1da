"""The five generation services, registered in one place. No bpy: worker threads and the
pure test suite import this package.

A service is one module (`trify3d.py`, …): its `INFO` facts and its Provider class. Adding
one is that module, its import here and one line in `_BUILT` (docs/services.md).

The rest of the package: `base.py` (the contract), `errors.py` (error kinds, one-line
errors, rate notes), `http.py` (all HTTP), `common.py` (what the service modules share),
`filekind.py` (a file's kind by its first bytes).
"""

from __future__ import annotations

from typing import Any

from . import ravenra, siray, trify3d, triverse, voxelai
from .base import Http, Provider, ServiceInfo
from .errors import ErrorKind, ProviderError
from .http import HttpClient

# In the order the UI lists them.
_BUILT: dict[str, type[Provider]] = {
    ravenra.INFO.id: ravenra.Ravenra,
    siray.INFO.id: siray.Siray,
    voxelai.INFO.id: voxelai.VoxelAI,
    trify3d.INFO.id: trify3d.Trify3D,
    triverse.INFO.id: triverse.Triverse,
}
PROVIDER_IDS: tuple[str, ...] = tuple(_BUILT)
SERVICES: dict[str, ServiceInfo] = {pid: cls.info for pid, cls in _BUILT.items()}


def make_http(provider_id: str, api_key: str, base_url: str, **kw: Any) -> HttpClient:
    """The service's HTTP client (its auth header and scheme); `kw` as HttpClient takes them."""
    info = SERVICES[provider_id]
    if info.max_answer_bytes:
        kw.setdefault("max_answer_bytes", info.max_answer_bytes)
    return HttpClient(
        api_key, base_url, auth_header=info.auth_header, auth_scheme=info.auth_scheme, **kw
    )


def get_provider(provider_id: str, http: Http) -> Provider:
    """The implementation of one service; services not built yet fail with a clear message."""
    cls = _BUILT.get(provider_id)
    if cls is None:
        name = SERVICES[provider_id].name if provider_id in SERVICES else provider_id
        raise ProviderError(ErrorKind.BAD_REQUEST, f"{name} is not available in this version yet")
    return cls(http)
