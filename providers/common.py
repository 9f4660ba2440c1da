"""What the service modules share: reading options and answers, local images sent as data,
and the one rule for errors that speak of credits. Plain Python, no bpy; no I/O but reading
a local image.

Each service's own quirks stay in its module; these are the readings that do not differ.
"""

from __future__ import annotations

import base64
import math
import os
import re
from collections.abc import Mapping
from typing import Any

from . import filekind
from .base import Charge, ChargeState, is_url
from .errors import ErrorKind, ProviderError

MAX_IMAGE_BYTES = 20 * 1024 * 1024  # local images sent as data (Siray, Voxel-AI, Trify3D)

# Words that, in an error, speak of the account's money rather than of the key or the request.
CREDIT_WORDS = re.compile(r"credit|balance|insufficient|quota|payment|billing|top.?up", re.I)


# -- errors -----------------------------------------------------------------------------------


def bad(detail: str) -> ProviderError:
    """The request is refused before anything is sent (or the service refused it)."""
    return ProviderError(ErrorKind.BAD_REQUEST, detail)


def one_line(text: object, limit: int = 200) -> str:
    return " ".join(str(text).split())[:limit]


def speaks_of_credits(text: str) -> bool:
    return CREDIT_WORDS.search(text) is not None


def credits_if_said(exc: ProviderError) -> ProviderError:
    """A 403 whose words speak of credits is a credit problem, not a rejected key (services
    send 402 or 403 for an empty account); any other error as it is."""
    if exc.kind == ErrorKind.AUTH and exc.status == 403 and speaks_of_credits(exc.detail):
        return ProviderError(ErrorKind.CREDITS, exc.detail, exc.retry_after, status=exc.status)
    return exc


# -- money ------------------------------------------------------------------------------------


def amount(value: object) -> float | None:
    """A non-negative number as services write amounts (a number, or one in a string)."""
    written = isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value)
    if isinstance(value, bool) or not (isinstance(value, int | float) or written):
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if number >= 0 and math.isfinite(number) else None


def generation() -> Charge:
    """Where a service documents no price (nor refunds), a paid generation is the unit: each
    create that made a task counts one, whatever becomes of the task."""
    return Charge(1.0, "generation", ChargeState.CHARGED)


def reported_charge(
    data: Mapping[str, Any],
    keys: tuple[str, ...],
    unit: str,
    state: ChargeState,
    balance_keys: tuple[str, ...] = (),
) -> Charge | None:
    """The charge an answer reports under the first of `keys` it has (None when it has none):
    an amount in a shape not understood keeps the job going with the amount unknown."""
    key = next((k for k in keys if data.get(k) is not None), None)
    balance_key = next((k for k in balance_keys if data.get(k) is not None), None)
    if key is None and balance_key is None:
        return None
    balance = amount(data.get(balance_key)) if balance_key else None
    if key is None:
        return Charge(None, unit, state, balance)
    value = amount(data[key])
    note = "" if value is not None else f"{key} {one_line(data[key], 40)!r} is not an amount"
    return Charge(value, unit, state, balance, note)


# -- options ----------------------------------------------------------------------------------


def whole_number(value: object) -> int | None:
    """An int as options carry it (int, integral float, digits from a CLI); never a bool."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def int_in_range(name: str, value: object, lo: int, hi: int) -> int:
    """Option `name` as a whole number from lo to hi, or BAD_REQUEST naming the range."""
    number = whole_number(value)
    if number is None or not lo <= number <= hi:
        raise bad(f"{name} must be a whole number from {lo} to {hi}, got {value!r}")
    return number


def flag(name: str, value: object) -> bool:
    """Option `name` as a boolean: true/false, 1/0 (as ints or text), or BAD_REQUEST."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise bad(f"{name} must be true or false, got {value!r}")


# -- answers ----------------------------------------------------------------------------------


def json_object(answer: object, what: str = "the answer") -> dict[str, Any]:
    """The answer as the JSON object it must be, or BAD_RESPONSE."""
    if not isinstance(answer, dict):
        raise ProviderError(
            ErrorKind.BAD_RESPONSE, f"{what} is not a JSON object: {type(answer).__name__}"
        )
    return answer


def unwrapped(answer: object, what: str = "the answer") -> dict[str, Any]:
    """The record of an answer that may come wrapped in {"data": {...}}."""
    record = json_object(answer, what)
    inner = record.get("data")
    return inner if isinstance(inner, dict) else record


def status_word(value: object) -> str:
    """A status as services spell it → one word: "in progress", "In-Progress" → IN_PROGRESS."""
    return re.sub(r"[\s\-]+", "_", str(value or "").strip()).upper()


def http_url(value: object) -> str | None:
    """An http(s) URL as the answer gives it (trimmed), else None."""
    return value.strip() if isinstance(value, str) and is_url(value.strip()) else None


def progress_fraction(value: object) -> float:
    """Progress as services send it (0..1, 0..100, "45%") → 0..1."""
    if isinstance(value, str):
        value = value.strip().rstrip("%")
        try:
            number = float(value) / 100.0
        except ValueError:
            return 0.0
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value) / (100.0 if value > 1 else 1.0)
    else:
        return 0.0
    return min(max(number, 0.0), 1.0)


# -- images -----------------------------------------------------------------------------------


def image_reference(path: str) -> str:
    """What goes in a service's image-URL field: a URL as given, a local file as data."""
    return path if is_url(path) else image_data_url(path)


def image_data_url(path: str) -> str:
    """A local PNG/JPEG/WebP as a data: URL, after checking it really is one."""
    name = os.path.basename(path)
    try:
        if os.path.getsize(path) > MAX_IMAGE_BYTES:
            raise bad(f"image larger than 20 MB: {name}")
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise bad(f"cannot read image {name}: {exc.strerror}") from None
    kind = filekind.kind_of(data[: filekind.HEAD_BYTES])
    if kind is None or kind not in filekind.IMAGE_KINDS:
        raise bad(f"not a PNG, JPEG or WebP image: {name}")
    return f"data:{filekind.MIME_TYPES[kind]};base64,{base64.b64encode(data).decode('ascii')}"
