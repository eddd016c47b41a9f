"""Cross-check with the PyPI ``irys-sdk``: it builds the same bytes for the same key, tags and data.

irys-sdk pins web3 < 7 and cannot live in our environment, so it is installed into its own virtual
environment under the test's temporary directory (from the pip cache / configured index; the test is
skipped when it cannot be installed). Its Avro tags come from the ``avro`` library and its signer from
eth-account 0.8, so this checks our encoder against code we did not write. Note: irys-sdk prints ids
in base58, the network (arbundles, gateways) in base64url; the 32 id bytes are compared.
"""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import pytest

from nexus_kernel.anchoring.irys import b64url_decode, build_data_item, parse_data_item

pytestmark = pytest.mark.slow

KEY = "0x" + "5a" * 32
TAGS = [("App-Name", "Nexus-Stream"), ("Content-Type", "application/octet-stream"),
        ("Nexus-Head-Id", "ab" * 32), ("Nexus-Tree-Size", "1000000"), ("Ünïcode", "välue ✓")]
DATA = b'{"tree_size": 1000000, "root": "00ff"}' * 3

SCRIPT = r"""
import json, sys
from irys_sdk.bundle.create import create_data
from irys_sdk.bundle.dataitem import DataItem
from irys_sdk.bundle.signers.ethereum import EthereumSigner
args = json.loads(sys.argv[1])
item = create_data(bytearray(bytes.fromhex(args["data"])), EthereumSigner(args["key"]),
                   [tuple(t) for t in args["tags"]])
item.sign(EthereumSigner(args["key"]))
ours = bytearray(bytes.fromhex(args["ours"]))
print(json.dumps({"item": bytes(item.get_raw()).hex(), "raw_id": bytes(item.raw_id).hex(),
                  "ours_valid": DataItem.verify(ours)}))
"""


@pytest.fixture(scope="module")
def irys_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("irys-sdk-venv")
    venv.EnvBuilder(with_pip=True).create(home)
    python = home / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "irys-sdk==0.1.9"], capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        pytest.skip(f"irys-sdk could not be installed in its own venv: {done.stderr.strip()[-300:]}")
    return python


def test_irys_sdk_builds_the_same_item(irys_python: Path) -> None:
    ours = build_data_item(DATA, TAGS, KEY)
    args = {"key": KEY, "tags": TAGS, "data": DATA.hex(), "ours": ours.hex()}
    done = subprocess.run([str(irys_python), "-c", SCRIPT, json.dumps(args)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    theirs = json.loads(done.stdout)
    assert theirs["ours_valid"] is True  # irys-sdk's verifier accepts our item
    assert bytes.fromhex(theirs["item"]) == ours  # byte for byte
    assert bytes.fromhex(theirs["raw_id"]) == b64url_decode(parse_data_item(ours).id)
