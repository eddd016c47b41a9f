"""The web3 connection of the evm anchor, and the one place its errors become anchor errors.

A node that cannot be reached (refused, timed out, HTTP 5xx, a JSON-RPC answer that says it is
overloaded) raises :class:`~nexus_kernel.anchoring.AnchorUnavailable`: the anchoring service keeps the
tree head queued and retries with backoff. web3's own retries are turned off so that the service, which
owns the backoff, sees the outage at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import requests
from web3 import HTTPProvider, Web3
from web3.exceptions import Web3Exception, Web3RPCError

from .._protocol import AnchorError, AnchorUnavailable

__all__ = ["connect", "rpc_errors", "rpc_message"]

# JSON-RPC error texts that mean "not now" rather than "never" (geth, anvil, common providers)
_TRANSIENT = ("insufficient funds", "rate limit", "too many requests", "timeout", "unavailable", "overloaded",
              "header not found", "max fee per gas less than block base fee", "underpriced")


def connect(url: str, timeout: float) -> tuple[Web3, requests.Session]:
    """A web3 client of ``url`` with ``timeout`` seconds per call and no retries of its own, and its
    HTTP session (close it when done)."""
    session = requests.Session()
    provider = HTTPProvider(url, request_kwargs={"timeout": timeout}, session=session,
                            exception_retry_configuration=None)
    return Web3(provider), session


def rpc_message(exc: BaseException) -> str:
    """The node's error text of a JSON-RPC error (lower case), else ``str(exc)``."""
    if isinstance(exc, Web3RPCError) and isinstance(exc.rpc_response, dict):
        error = exc.rpc_response.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"]).lower()
    return str(exc).lower()


@contextmanager
def rpc_errors(doing: str) -> Iterator[None]:
    """Turn transport failures and transient node errors met while ``doing`` into AnchorUnavailable."""
    try:
        yield
    except AnchorError:
        raise
    except OSError as exc:  # requests' ConnectionError and Timeout are OSErrors
        raise AnchorUnavailable(f"evm node unreachable while {doing}: {type(exc).__name__}") from exc
    except Web3RPCError as exc:
        message = rpc_message(exc)
        if any(word in message for word in _TRANSIENT):
            raise AnchorUnavailable(f"evm node refused {doing} for now: {message}") from exc
        raise AnchorError(f"evm node refused {doing}: {message}") from exc
    except Web3Exception as exc:
        raise AnchorError(f"evm {doing} failed: {exc}") from exc
