"""A stand-in Irys node on 127.0.0.1: the Irys network cannot be reached from tests, its wire protocol can.

It speaks what the irys backend (and the irys SDKs) use:

- ``POST /tx/ethereum`` (``application/octet-stream``): an ANS-104 type-3 data item. The node checks it
  the way a bundler does - layout, presence bytes, tag header, the owner's EIP-191 signature over the
  deep hash - and answers 200 with a receipt signed by its RSA key (RSA-PSS over
  ``deep_hash(["Bundlr", version, id, deadlineHeight, timestamp])``), 201 with the same receipt if the
  item was already received, 400 with a reason if the item is invalid.
- ``GET /tx/{id}``: the item's header as JSON (404 if unknown); ``GET /{id}``: its data;
  ``GET /public``: the node's public key (base64url modulus).

Its checks are written here on their own (``hashlib``, ``eth_keys``), not with the backend's parser,
so a mistake in the backend's encoding is refused here instead of agreeing with itself.
``fail_with`` makes every request answer that status (e.g. 503, 402) until reset.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from eth_keys import keys
from eth_utils import keccak


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _dh(chunk: Any) -> bytes:
    sha = lambda b: hashlib.sha384(b).digest()  # noqa: E731
    if isinstance(chunk, bytes):
        return sha(sha(b"blob%d" % len(chunk)) + sha(chunk))
    acc = sha(b"list%d" % len(chunk))
    for item in chunk:
        acc = sha(acc + _dh(item))
    return acc


def check_item(raw: bytes) -> dict[str, Any]:
    """The item's header fields if it is a valid type-3 item; ValueError with the reason otherwise."""
    if len(raw) < 2 + 65 + 65 + 2 + 16 or struct.unpack_from("<H", raw)[0] != 3:
        raise ValueError("not a signature type 3 data item")
    sig, owner = raw[2:67], raw[67:132]
    pos, opt = 132, []
    for _ in range(2):
        if raw[pos] not in (0, 1):
            raise ValueError("bad presence byte")
        opt.append(raw[pos + 1:pos + 33] if raw[pos] else b"")
        pos += 33 if raw[pos] else 1
    n_tags, n_bytes = struct.unpack_from("<QQ", raw, pos)
    tags_raw = raw[pos + 16:pos + 16 + n_bytes]
    if len(tags_raw) != n_bytes or (n_tags == 0) != (n_bytes == 0):
        raise ValueError("tag header does not match the tags")
    data = raw[pos + 16 + n_bytes:]
    message = _dh([b"dataitem", b"1", b"3", owner, opt[0], opt[1], tags_raw, data])
    digest = keccak(b"\x19Ethereum Signed Message:\n" + str(len(message)).encode() + message)
    r, s, v = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
    try:
        ok = keys.Signature(vrs=(v - 27 if v >= 27 else v, r, s)).verify_msg_hash(digest, keys.PublicKey(owner[1:]))
    except Exception as exc:  # noqa: BLE001 - any malformed signature is a refusal
        raise ValueError(f"invalid signature: {exc}") from None
    if not ok:
        raise ValueError("invalid signature")
    return {"id": _b64(hashlib.sha256(sig).digest()), "signature": _b64(sig), "owner": _b64(owner),
            "target": _b64(opt[0]), "anchor": _b64(opt[1]), "tags_bytes": n_bytes, "data_size": len(data),
            "_data": data}


class StandInIrysNode:
    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        n = self._key.public_key().public_numbers().n
        self.public_key = _b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))
        self.items: dict[str, dict[str, Any]] = {}
        self.receipts: dict[str, dict[str, Any]] = {}
        self.uploads = 0
        self.fail_with: int | None = None
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sign_receipt(self, item_id: str) -> dict[str, Any]:
        receipt = {"id": item_id, "timestamp": int(time.time() * 1000), "version": "1.0.0",
                   "deadlineHeight": 1_000_000, "public": self.public_key, "validatorSignatures": []}
        message = _dh([b"Bundlr", receipt["version"].encode(), item_id.encode(),
                       str(receipt["deadlineHeight"]).encode(), str(receipt["timestamp"]).encode()])
        signature = self._key.sign(message, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                                   hashes.SHA256())
        return {**receipt, "signature": _b64(signature)}

    def start(self) -> StandInIrysNode:
        node = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if node.fail_with:
                    return self._send(node.fail_with, b"unavailable", "text/plain")
                if self.path != "/tx/ethereum" or self.headers.get("Content-Type") != "application/octet-stream":
                    return self._send(400, b"expected POST /tx/ethereum application/octet-stream", "text/plain")
                try:
                    header = check_item(body)
                except ValueError as exc:
                    return self._send(400, f"Invalid Data Item: {exc}".encode(), "text/plain")
                node.uploads += 1
                if header["id"] in node.items:
                    return self._send(201, json.dumps(node.receipts[header["id"]]).encode())
                node.items[header["id"]] = header
                node.receipts[header["id"]] = node.sign_receipt(header["id"])
                return self._send(200, json.dumps(node.receipts[header["id"]]).encode())

            def do_GET(self) -> None:  # noqa: N802
                if node.fail_with:
                    return self._send(node.fail_with, b"unavailable", "text/plain")
                parts = [p for p in self.path.split("/") if p]
                if parts == ["public"]:
                    return self._send(200, node.public_key.encode(), "text/plain")
                item = node.items.get(parts[-1]) if parts and len(parts) <= 2 else None
                if item is None:
                    return self._send(404, b"Not Found", "text/plain")
                if parts[0] == "tx":
                    return self._send(200, json.dumps({k: v for k, v in item.items() if k != "_data"}).encode())
                return self._send(200, item["_data"], "application/octet-stream")

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
