"""The keys/token CLI, and SDK retries against a real gateway that restarts."""

from __future__ import annotations

import httpx
from click.testing import CliRunner

from nexus_kernel.gateway._cli import gateway_commands


def test_cli_keys_and_token(gw, monkeypatch):
    monkeypatch.setenv("NEXUS_HOME", str(gw.settings.home))
    monkeypatch.setenv("NEXUS_JWT_SECRET", gw.settings.jwt_secret.get_secret_value())
    keys, token = gateway_commands
    runner = CliRunner()
    created = runner.invoke(keys, ["create", "ci", "--role", "analyst", "--stream", "pumps"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[0]
    assert httpx.get(gw.url + "/api/streams/pumps/latest", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    listed = runner.invoke(keys, ["list"])
    assert "ci" in listed.output and key not in listed.output
    key_id = key.split("_")[1]
    assert runner.invoke(keys, ["revoke", key_id]).exit_code == 0
    assert httpx.get(gw.url + "/api/streams", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    minted = runner.invoke(token, ["--role", "viewer"]).output.strip()
    assert httpx.get(gw.url + "/api/streams", headers={"Authorization": f"Bearer {minted}"}).status_code == 200


def test_keys_and_token_follow_nexus_home_option(tmp_path, monkeypatch):
    """`nexus --home H keys create` writes H's key file and `nexus --home H token` signs with H's secret
    (both once read only NEXUS_HOME, and wrote into ./.nexus)."""
    import jwt

    from nexus_kernel.cli import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEXUS_HOME", raising=False)
    home = tmp_path / "elsewhere"
    runner = CliRunner()
    created = runner.invoke(cli, ["--home", str(home), "keys", "create", "wall", "--role", "viewer"])
    assert created.exit_code == 0, created.output
    assert (home / "api_keys.json").exists() and not (tmp_path / ".nexus").exists()
    minted = runner.invoke(cli, ["--home", str(home), "token", "--role", "viewer"]).stdout.strip()
    secret = (home / "jwt_secret").read_text().strip()
    assert jwt.decode(minted, secret, algorithms=["HS256"], audience="nexus")["role"] == "viewer"
