"""One ``Settings`` object for the whole process.

Values come, highest priority first, from keyword arguments, ``NEXUS_*`` environment variables,
and an optional ``nexus.toml`` in the working directory (or the file named by ``NEXUS_CONFIG``).
No other module reads the environment: the object is built once, at start, and passed where needed.
A wrong value fails at start with :class:`SettingsError`, whose message names the setting.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = ["Settings", "SettingsError", "load_settings", "redact"]

ENV_PREFIX = "NEXUS_"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


# user:password@ in a URL (greedy to the last '@' of the authority), password=... in a libpq key/value DSN
_URL_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^:/?#@\s]*:)([^/?#\s]*)(?=@)", re.IGNORECASE)
_KV_PASSWORD = re.compile(r"\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every DSN password replaced by ``***`` (URLs and ``password=`` pairs).

    >>> redact("postgresql://nexus:s3cret@db:5432/nexus?sslmode=require")
    'postgresql://nexus:***@db:5432/nexus?sslmode=require'
    >>> redact("host=db user=nexus password='a b' dbname=x")
    'host=db user=nexus password=*** dbname=x'
    """
    return _KV_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***", text))


class Settings(BaseSettings):
    """Process-wide configuration.

    Every field can be set as ``NEXUS_<FIELD>`` in the environment or as ``<field> = ...`` in
    ``nexus.toml``.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
        case_sensitive=False,
    )

    home: Path = Field(Path(".nexus"), description="Directory for the registry, stores, spool and runs.")
    store: str = Field(
        "duckdb",
        description="'duckdb' (file under home), 'memory', 'duckdb:///path.db', a postgresql:// DSN, or any URL "
        "scheme a store plugin registers (entry point group nexus_kernel.stores).",
    )
    redis_url: SecretStr | None = Field(None, description="redis://host:port/db; enables Redis cache and bus.")
    key_prefix: str = Field("nexus", description="Prefix of every Redis key this process uses.")
    spool_max_bytes: int = Field(1 << 30, gt=0, description="Bound of the store's disk spool (home/spool).")
    store_retries: int = Field(5, gt=0, description="Tries of a store operation before its batch is spooled.")
    store_retry_wait: float = Field(2.0, gt=0, description="Longest backoff between store retries (seconds).")

    # Cache and live bus (nexus_kernel/storage/_cache.py, _bus.py)
    cache_recent: int = Field(1000, gt=0, description="Rows per series the cache keeps in its recent window.")
    cache_ttl: float = Field(60.0, gt=0, description="Seconds a cached query result lives.")
    cache_entries: int = Field(1024, gt=0, description="Query results the in-process cache holds (LRU).")
    cache_state_ttl: float | None = Field(
        None, gt=0, description="Seconds the latest/recent state of an idle stream lives; unset keeps it."
    )
    bus_queue: int = Field(1000, gt=0, description="Messages a live-bus subscriber may have waiting before it is cut off.")
    bus_replay: int = Field(100, gt=0, description="Messages per topic the live bus keeps for replay.")

    # Engine
    batch_size: int = Field(10_000, gt=0, description="Records per micro-batch.")
    batch_interval: float = Field(0.5, gt=0, description="Seconds before a partial micro-batch is flushed.")
    buffer_batches: int = Field(64, gt=0, description="Micro-batches a source may buffer before it waits.")
    allowed_lateness: float = Field(
        60.0, ge=0, description="Seconds a record may arrive behind the watermark before it is late."
    )
    max_attr_bytes: int = Field(4096, gt=0, description="Largest serialized attributes of one record.")
    max_future: float = Field(
        300.0, ge=0, description="Seconds a record's event time may be ahead of the stream's clock (the later of "
        "wall-clock UTC and the source's own clock, e.g. a simulator running ahead) before it is dead-lettered as "
        "'future'; it never moves a watermark. 0 means no slack (a sender whose clock runs fast is refused); a value "
        "beyond ~292 years (e.g. 1e10) turns the check off.")
    max_name_length: int = Field(
        256, gt=0, le=4096, description="Longest series or field name (characters); longer names, empty names and "
        "names with control or format characters (Unicode Cc, Cf, Cs, Zl, Zp: NUL, ESC, bidi overrides, "
        "zero-width...) are dead-lettered as 'bad_series' / 'bad_field'.")
    data_dirs: list[Path] = Field(
        default_factory=list, description="Directories (besides home/data) that file sources of a stream spec may "
        "read; paths are resolved, symlinks included, and must stay inside one of them.")
    secrets: dict[str, SecretStr] = Field(
        default_factory=dict, description="Named secrets that stream specs reference as {\"secret\": \"NAME\"} "
        "(also read from NEXUS_SECRET_<NAME>); specs never hold a secret in clear.")

    # Simulator defaults used by `nexus up`
    sim_series: int = Field(20, gt=0, le=100_000, description="Series the built-in simulator emits.")
    sim_rate: float = Field(200.0, gt=0, description="Records per second per simulator stream.")
    sim_seed: int = Field(7, description="Seed of the built-in simulator.")

    # Gateway
    host: str = Field("127.0.0.1", description="Address the gateway and dashboard bind to.")
    port: int = Field(8765, ge=0, le=65535, description="Gateway port.")
    jwt_secret: SecretStr | None = Field(
        None, description="HS256 signing secret of gateway tokens; unset: one is made in home/jwt_secret (0600).")
    jwt_public_key: Path | None = Field(None, description="PEM public key: accept RS256 tokens signed by its pair.")
    jwt_private_key: Path | None = Field(None, description="PEM private key: mint RS256 tokens (`nexus token`).")
    jwt_audience: str = Field("nexus", description="Required 'aud' claim of gateway tokens.")
    jwt_issuer: str = Field("nexus", description="Required 'iss' claim of gateway tokens.")
    jwt_ttl: float = Field(12 * 3600.0, gt=0, description="Seconds a minted token is valid.")
    tls_cert: Path | None = Field(None, description="PEM certificate: the gateway serves HTTPS when set with tls_key.")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert.")
    max_body_bytes: int = Field(32 << 20, gt=0, description="Largest request body the gateway reads (bytes).")
    rate_limit: int = Field(1200, gt=0, description="Requests per rate_window per API key or token subject.")
    rate_limit_address: int = Field(2400, gt=0, description="Requests per rate_window per client address.")
    rate_window: float = Field(60.0, gt=0, description="Sliding window of the gateway rate limits (seconds).")
    ws_queue: int = Field(256, gt=0, description="Messages a WebSocket client may have waiting before some are dropped.")
    ws_queue_bytes: int = Field(
        8 << 20, gt=0, description="Bytes a WebSocket client may have waiting; past that it is cut off (close 4008).")
    ws_per_principal: int = Field(16, gt=0, description="Open WebSocket connections one credential may hold at once.")
    ws_recheck: float = Field(
        5.0, gt=0, description="Seconds between re-checks of an open WebSocket's credential (revocation); expiry "
        "closes it on time.")
    ws_linger: float = Field(0.025, ge=0, le=1, description="Seconds a WebSocket client's writer waits after a frame so that what arrives meanwhile goes out as one frame (0: a frame per message).")

    # Dashboards (dashboards/, nexus_kernel.scheduler)
    monitor_port: int = Field(5006, ge=0, le=65535, description="Port of the monitor `nexus up` serves (Panel).")
    gateway_url: str | None = Field(None, description="Gateway the Voila monitor and notebooks use; unset: http://host:port.")
    gateway_token: SecretStr | None = Field(None, description="Token the Voila monitor sends to the gateway.")

    # Forecasting (nexus_kernel.analysis.models)
    forecast_model: str = Field("auto", description="Forecaster retrain() trains: 'auto', 'ets', 'gbm', ...")
    forecast_lookback: str = Field("14d", description="History retrain() reads from the store.")
    forecast_horizon: int = Field(24, gt=0, description="Steps retrain() backtests and serve() forecasts.")
    forecast_level: float = Field(0.9, gt=0, lt=1, description="Coverage of served prediction bands.")

    # Anchoring (nexus_kernel/anchoring): the Merkle log, its signing key, the anchor service
    anchor_enabled: bool = Field(True, description="Run the anchoring service in the runtime (`nexus up`).")
    anchor_backend: str = Field("ledger", description="Anchor backend tree heads are published to: 'ledger' (in "
                                "the store, the default), 'evm', 'irys', or a plugin's name.")
    anchor_key: SecretStr | None = Field(
        None, description="Hex of the 32-byte Ed25519 seed that signs tree heads; unset: home/anchor_key (0600).")
    anchor_every: int = Field(1000, gt=0, description="Items logged before a batch closes (a head is signed and anchored).")
    anchor_interval: float = Field(10.0, gt=0, description="Seconds after which a batch with any items closes.")
    anchor_kinds: list[str] = Field(
        default_factory=lambda: ["points", "anomalies", "dead_letters"],
        description="Bus topic kinds whose frames the anchor service logs (points are logged as records).")
    anchor_retry_max: float = Field(60.0, gt=0, description="Longest wait between retries of an unreachable anchor backend (s).")
    anchor_backfill_slack: float = Field(
        300.0, ge=0, description="After the service's bus subscription lagged, it logs from the store each stream's "
        "items from this many seconds before the newest it had logged (late items older than that: anchor job).")

    # Anchoring, chain backends (nexus_kernel/anchoring/evm, nexus_kernel/anchoring/irys)
    evm_rpc_url: str = Field("http://127.0.0.1:8545", description="JSON-RPC URL of the EVM node the evm anchor uses.")
    evm_private_key: SecretStr | None = Field(
        None, description="Hex secp256k1 key that signs anchor transactions (locally; the node never sees it).")
    evm_contract: str | None = Field(
        None, description="Address of the deployed Anchor contract (`nexus anchor deploy` prints it); the verifier "
        "accepts only logs this address emitted.")
    evm_chain_id: int | None = Field(None, gt=0, description="Chain id to sign for; unset: asked of the node once.")
    evm_confirmations: int = Field(1, ge=1, description="Blocks on top of an anchor's (its own included) before it is final.")
    evm_gas_cap: int = Field(100_000, ge=21_000, description="Most gas one anchor transaction may use (the estimate +20%, capped).")
    evm_max_fee_gwei: float | None = Field(
        None, gt=0, description="Highest fee per gas (gwei) to pay; above it submit waits (AnchorUnavailable). Unset: no cap.")
    evm_timeout: float = Field(10.0, gt=0, description="Seconds one JSON-RPC call to the EVM node may take.")
    evm_replace_after: float = Field(
        60.0, gt=0, description="Seconds an anchor transaction may wait unmined in the node's pool before it is sent "
        "again with the same nonce and fees raised by an eighth (a replacement the node accepts), within "
        "evm_max_fee_gwei.")
    evm_log_lookback: int = Field(
        10_000, ge=0, description="Blocks searched for an earlier anchor of the same tree head before sending another.")
    irys_url: str = Field("https://uploader.irys.xyz", description="Irys (ANS-104 bundler) node the irys anchor uploads to.")
    irys_private_key: SecretStr | None = Field(
        None, description="Hex secp256k1 key that signs data items; unset: one is made in home/irys_key (0600).")
    irys_bundler_key: str | None = Field(
        None, description="The bundler's RSA public key (base64url modulus, as GET {irys_url}/public serves it): "
        "receipts signed by another key are refused. Unset: the key named in the receipt is used.")
    irys_timeout: float = Field(20.0, gt=0, description="Seconds one request to the Irys node may take.")

    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        """Any scheme the store registry serves, plugins' entry points included (see storage._protocol)."""
        # Imported here, not at the top: storage imports this module. The first call imports the store
        # backends (they register themselves at import).
        from .storage import store_backend

        store_backend(value)  # UnknownStoreError, a ValueError, names the known schemes
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get(f"{ENV_PREFIX}CONFIG", "nexus.toml"))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_path))

    def __repr_args__(self) -> Any:
        # store is a plain str (a path or a DSN); its password must not reach reprs, errors or logs
        for name, value in super().__repr_args__():
            yield name, redact(value) if name == "store" and isinstance(value, str) else value

    @property
    def registry_path(self) -> Path:
        return self.home / "streams.json"

    @property
    def allowed_data_dirs(self) -> list[Path]:
        """Where file sources named by a stream spec may read: home/data and ``data_dirs``, resolved."""
        return [p.resolve() for p in (self.home / "data", *self.data_dirs)]

    def secret(self, name: str) -> str | None:
        """A named secret: ``secrets[name]``, else ``NEXUS_SECRET_<NAME>``; None when neither is set.

        Only this prefix is read, so a spec cannot name another variable (the JWT secret, say) and
        send it to a host of its choosing.
        """
        if name in self.secrets:
            return self.secrets[name].get_secret_value()
        return os.environ.get(f"{ENV_PREFIX}SECRET_{name.upper()}")

    @property
    def spool_dir(self) -> Path:
        return self.home / "spool"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        name = ".".join(str(p) for p in item["loc"]) or "?"
        env = ENV_PREFIX + name.upper().replace(".", "__")
        parts.append(redact(f"setting '{name}' ({env}): {item['msg']} (got {item.get('input')!r})"))
    return "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning a validation failure into a one-line :class:`SettingsError`."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
