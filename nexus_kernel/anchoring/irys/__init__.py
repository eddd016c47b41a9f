"""The ``irys`` anchor backend: tree heads as ANS-104 data items (signature type 3) on an Irys node.

Written from the ANS-104 spec and checked against arbundles' test vectors; the PyPI ``irys-sdk`` pins
web3 < 7 and is not a dependency. Needs the ``chain`` extra (eth-account, from web3).
"""

from ._backend import ATTESTATION, IrysAnchor, head_tags
from ._dataitem import DataItem, DataItemError, b64url, b64url_decode, build_data_item, parse_data_item
from ._deephash import deep_hash
from ._receipt import receipt_message, verify_receipt
from ._tags import TagError, decode_tags, encode_tags

__all__ = ["ATTESTATION", "DataItem", "DataItemError", "IrysAnchor", "TagError", "b64url", "b64url_decode",
           "build_data_item", "decode_tags", "deep_hash", "encode_tags", "head_tags", "parse_data_item",
           "receipt_message", "verify_receipt"]
