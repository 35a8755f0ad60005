"""Access control: which API key a request bears, whether it may use the model, and within which limits.

In open mode (``[access] mode = "open"``, the default) :func:`admit` and :func:`authenticate` return at
once: nothing is checked and nothing costs a Redis call. In keys mode:

- A key is found as :class:`~api.access.keys.Access` describes.
- Missing or unknown key → 401 ``invalid_api_key``; a model the key may not use → 403
  ``model_not_allowed``; budget spent → 429 ``insufficient_quota``; over rpm or tpm → 429
  ``rate_limit_exceeded`` with ``Retry-After`` (see :mod:`api.access.store` for the windows). tpm and
  the budget are charged on admission with an estimate of the prompt (a quarter of the body's bytes), and
  settled with the real figures when the generation ends; only the output can overshoot a limit.
- Usage is accounted per key and model by the worker that runs the generation (:mod:`shared.usage`), so
  cancelled, failed and unwatched background generations count too: :meth:`Admission.charge` returns
  the :class:`~shared.usage.Billing` the handler puts into the generation.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from api.access.keys import Access
from api.state import gateway_state
from shared.access_config import KeyPolicy
from shared.errors import PermissionDenied
from shared.usage import Billing

if TYPE_CHECKING:
    from litestar import Request
    from litestar.connection import ASGIConnection

__all__ = ("Admission", "access_for", "admit", "authenticate", "charged")


class _RequestedModel(msgspec.Struct):
    model: str | None = None


_model_decoder = msgspec.json.Decoder(_RequestedModel)


def access_for(connection: ASGIConnection[Any, Any, Any, Any]) -> Access:
    return gateway_state(connection).access


def _keys_mode(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    return gateway_state(connection).settings.access.mode == "keys"


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> KeyPolicy | None:
    """In keys mode, require a valid key (for requests that start no generation) and return it."""
    if _keys_mode(connection):
        return await access_for(connection).authenticate(connection)
    return None


@dataclass(frozen=True, slots=True)
class Admission:
    """A request whose key may use its model; :meth:`charge` it once it is known to be valid."""

    access: Access
    key: KeyPolicy
    model: str
    body_bytes: int

    async def charge(self) -> Billing:
        """Count the request against the key's limits (429 if one is reached); whom the generation bills."""
        return await self.access.limit(self.key, self.model, self.body_bytes)


@contextlib.asynccontextmanager
async def charged(admission: Admission | None) -> AsyncIterator[Billing | None]:
    """Charge ``admission`` (``None`` in open mode: nothing to charge) for the block that queues its
    generation; if the block fails, the generation never runs and its token reservation is given back."""
    if admission is None:
        yield None
        return
    billing = await admission.charge()
    try:
        yield billing
    except BaseException:
        await admission.access.ledger.release(billing, now_s=int(time.time()))
        raise


async def admit(request: Request[Any, Any, Any]) -> Admission | None:
    """In keys mode, require a valid key allowed the requested model (``None`` in open mode).

    The model is read from the body; a body that does not even name one is left for the handler to
    reject with 400. Limits are checked by :meth:`Admission.charge`, after the request proved valid, so
    a malformed request does not use up the key's quota.
    """
    if not _keys_mode(request):
        return None
    access = access_for(request)
    key = await access.authenticate(request)
    body = await request.body()
    try:
        model = _model_decoder.decode(body).model
    except msgspec.DecodeError:
        model = None
    if model is not None and key.models and model not in key.models:
        raise PermissionDenied(
            f"This API key may not use the model '{model}'.", code="model_not_allowed", param="model"
        )
    return Admission(access, key, model or "", len(body))
