"""Where the API server is and how to prove who we are, as aiohttp needs it.

The ``kubernetes`` package's loaders do the parsing of kubeconfig files (contexts, client
certificates, exec credential plugins, auth providers), so kdns accepts exactly the files
kubectl does. The in-cluster service account, the production path, is read here
directly (token, CA, ``KUBERNETES_SERVICE_HOST``/``PORT``): importing that package costs
about 33 MB resident, which a DNS server in a 170 Mi pod has no use for. What they produce is a
blocking client's ``Configuration``; this module turns it into a base URL, an
:class:`ssl.SSLContext` and a :class:`Credentials` object the async client asks for
headers before every request. Tokens that rotate under a running process (projected
service-account tokens expire hourly, ``tokenFile`` in a kubeconfig, exec plugins with
an expiry) are re-read here, never cached for the life of the process.

CoreDNS's choice of source is kept: ``kubeconfig PATH [CONTEXT]`` if given (with
``endpoint`` overriding its server), else a bare ``endpoint URL`` (with the client
certificate and CA of ``tls CERT KEY CACERT``, if given), else the in-cluster service
account.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kdns import errors as kdns_errors

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SERVICE_ACCOUNT_ENV = "KDNS_SERVICE_ACCOUNT_DIR"
"""For tests only: read the service account from this directory instead (a real pod
always has it at :data:`SERVICE_ACCOUNT_DIR`)."""
TOKEN_REREAD_SECONDS = 60.0
"""client-go re-reads a token file once a minute; bound tokens are refreshed by the
kubelet at 80% of their (at least ten-minute) lifetime, so a minute is always in time."""
_EXEC_RECHECK_SECONDS = 5.0


class ConfigError(kdns_errors.ConfigurationError):
    """The connection settings cannot be used: the message says which file or field."""


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """What the ``kubernetes`` directive (or ``kdns serve``) says about the API server."""

    endpoint: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False
    tls: tuple[str, str, str] | None = None
    """``tls CERT KEY CACERT``: the client pair and CA for a bare https ``endpoint``."""


class Credentials(Protocol):
    """Headers that authenticate one request; fresh on every call."""

    async def headers(self) -> Mapping[str, str]: ...

    def invalidate(self) -> None:
        """The server said 401: re-read whatever can be re-read before the next request."""


class NoCredentials:
    """A bare ``endpoint URL``: the API server (or a proxy in front) needs no token."""

    async def headers(self) -> Mapping[str, str]:
        return {}

    def invalidate(self) -> None:
        pass


class StaticToken:
    """A token written inline in a kubeconfig: it cannot change under us."""

    def __init__(self, token: str) -> None:
        self._headers = {"Authorization": _bearer(token)}

    async def headers(self) -> Mapping[str, str]:
        return self._headers

    def invalidate(self) -> None:
        pass


class TokenFile:
    """A token file re-read once a minute and after every 401, as client-go does.

    The kubelet rotates projected service-account tokens by swapping a symlink, so a
    read can briefly fail; the last good token is kept until a read succeeds again.
    """

    def __init__(self, path: str | Path, period: float = TOKEN_REREAD_SECONDS) -> None:
        self.path = Path(path)
        self.period = period
        self._token = self._read()
        if self._token is None:
            raise ConfigError(f"token file {self.path}: missing or empty")
        self._read_at = time.monotonic()

    def _read(self) -> str | None:
        try:
            token = self.path.read_text().strip()
        except OSError as exc:
            log.warning("token file %s: %s; keeping the previous token", self.path, exc)
            return None
        return token or None

    async def headers(self) -> Mapping[str, str]:
        if time.monotonic() - self._read_at >= self.period:
            self._token = self._read() or self._token
            self._read_at = time.monotonic()
        return {"Authorization": _bearer(self._token or "")}

    def invalidate(self) -> None:
        self._read_at = -self.period


class LoaderCredentials:
    """Exec plugins and auth providers: the ``kubernetes`` loader's refresh hook decides.

    The hook runs the plugin only when the credential it returned has expired, but a
    plugin is a subprocess, so it is called on a worker thread and at most every few
    seconds; after a 401 it is forced.
    """

    def __init__(self, configuration: Any) -> None:
        self._configuration = configuration
        self._checked = time.monotonic()
        self._lock = asyncio.Lock()

    def _current(self) -> dict[str, str]:
        value = self._configuration.api_key.get("BearerToken") or ""
        return {"Authorization": value} if value else {}

    async def headers(self) -> Mapping[str, str]:
        hook = self._configuration.refresh_api_key_hook
        if hook is not None and time.monotonic() - self._checked >= _EXEC_RECHECK_SECONDS:
            async with self._lock:
                if time.monotonic() - self._checked >= _EXEC_RECHECK_SECONDS:
                    await asyncio.to_thread(hook, self._configuration)
                    self._checked = time.monotonic()
        return self._current()

    def invalidate(self) -> None:
        # The loader re-runs the plugin only past the credential's expiry; asking again
        # is all that can be done from outside.
        self._checked = -_EXEC_RECHECK_SECONDS


def _bearer(token: str) -> str:
    return token if token.lower().startswith(("bearer ", "basic ")) else f"Bearer {token}"


@dataclass(frozen=True, slots=True)
class Connection:
    """Everything the async client needs: where, which TLS, which credentials."""

    base_url: str
    ssl: ssl.SSLContext | bool
    """An SSLContext for https; True (system defaults) or False (no TLS) otherwise."""
    credentials: Credentials
    server_hostname: str | None = None
    """``tls-server-name`` from the kubeconfig: the name the certificate must carry."""
    source: str = ""
    """Where this came from, for logs: ``kubeconfig PATH (context C)``, ``in-cluster``."""
    client_certificate: str | None = None
    """The ``tls`` CERT file presented to the server, for error messages."""

    def failure_hint(self, exc: BaseException) -> str:
        """What to add to a connection error so the operator can act on it.

        Under TLS 1.3 a server checks the client certificate after the handshake, and
        one it does not trust ends in a bare disconnect: the client library reports
        "Server disconnected", which alone sends nobody to the certificate.
        """
        if self.client_certificate is None or "disconnected" not in str(exc).lower():
            return ""
        return (
            f" (the API server closed the connection: it may not trust the client "
            f"certificate {self.client_certificate}; check the kubernetes tls CERT KEY CACERT)"
        )


def load(
    options: ConnectionOptions,
    *,
    environ: Mapping[str, str] | None = None,
    service_account_dir: str | Path | None = None,
) -> Connection:
    """Build a :class:`Connection`; blocking (files, maybe an exec plugin): call it at start
    or from a thread. ``environ`` and ``service_account_dir`` exist for tests (so does the
    ``KDNS_SERVICE_ACCOUNT_DIR`` variable, for a test that starts the process)."""
    environ = os.environ if environ is None else environ
    if service_account_dir is None:
        service_account_dir = environ.get(SERVICE_ACCOUNT_ENV) or SERVICE_ACCOUNT_DIR
    if options.kubeconfig:
        connection = _from_kubeconfig(options.kubeconfig, options.context)
        if options.endpoint:
            connection = _override_endpoint(connection, options.endpoint)
        return connection
    if options.endpoint and not options.in_cluster:
        return _from_endpoint(options.endpoint.rstrip("/"), options.tls)
    connection = _in_cluster(environ, Path(service_account_dir))
    if options.endpoint:
        connection = _override_endpoint(connection, options.endpoint)
    return connection


def _from_endpoint(url: str, tls: tuple[str, str, str] | None) -> Connection:
    """CoreDNS's ``endpoint`` + ``tls``: the client certificate is the only credential.

    A file that cannot be read or a key that does not match its certificate is refused
    here, at start, rather than surfacing as a handshake failure on every retry.
    """
    if not url.startswith("https"):
        return Connection(url, False, NoCredentials(), source=f"endpoint {url}")
    if tls is None:
        return Connection(url, True, NoCredentials(), source=f"endpoint {url}")
    cert, key, ca = tls
    try:
        context = _ssl_context(ca, cert, key, verify=True)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls {cert} {key} {ca}: {exc}") from exc
    return Connection(
        url,
        context,
        NoCredentials(),
        source=f"endpoint {url}, client certificate {cert}",
        client_certificate=cert,
    )


def _override_endpoint(connection: Connection, endpoint: str) -> Connection:
    url = endpoint.rstrip("/")
    tls: ssl.SSLContext | bool = connection.ssl
    if not url.startswith("https"):
        tls = False
    elif tls is False:
        tls = True
    return Connection(url, tls, connection.credentials, connection.server_hostname,
                      f"{connection.source}, endpoint {url}")  # fmt: skip


def _ssl_context(
    ca_file: str | None, cert_file: str | None, key_file: str | None, verify: bool
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file or None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file:
        context.load_cert_chain(cert_file, key_file or None)
    return context


def _configuration() -> Any:
    from kubernetes import client

    # type.__call__ skips Configuration's copy-of-the-default constructor behaviour.
    return type.__call__(client.Configuration)


def _from_kubeconfig(path: str, context: str | None) -> Connection:
    import yaml  # here: only a kubeconfig needs PyYAML
    from kubernetes.config import ConfigException, kube_config

    file = Path(path).expanduser()
    try:
        raw = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"kubeconfig {file}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"kubeconfig {file}: not a kubeconfig document")
    configuration = _configuration()
    try:
        make_loader: Any = kube_config.KubeConfigLoader  # untyped library code
        loader = make_loader(
            config_dict=raw, config_base_path=str(file.parent), active_context=context
        )
        loader.load_and_set(configuration)
        user_name = loader.current_context["context"].get("user")
    except (ConfigException, KeyError, ValueError, OSError) as exc:
        raise ConfigError(f"kubeconfig {file}: {exc}") from exc
    chosen = loader.current_context["name"]
    user = next(
        (u.get("user") or {} for u in raw.get("users") or [] if u.get("name") == user_name), {}
    )
    credentials: Credentials
    if user.get("tokenFile") and not user.get("token") and not user.get("auth-provider"):
        token_path = Path(user["tokenFile"]).expanduser()
        if not token_path.is_absolute():
            token_path = file.parent / token_path
        credentials = TokenFile(token_path)
    elif configuration.refresh_api_key_hook is not None and (
        user.get("exec") or user.get("auth-provider")
    ):
        credentials = LoaderCredentials(configuration)
    elif configuration.api_key.get("BearerToken"):
        credentials = StaticToken(configuration.api_key["BearerToken"])
    else:
        credentials = NoCredentials()
    host = str(configuration.host).rstrip("/")
    tls: ssl.SSLContext | bool = False
    if host.startswith("https"):
        tls = _ssl_context(
            configuration.ssl_ca_cert,
            configuration.cert_file,
            configuration.key_file,
            bool(configuration.verify_ssl),
        )
    return Connection(
        host,
        tls,
        credentials,
        getattr(configuration, "tls_server_name", None) or None,
        f"kubeconfig {file} (context {chosen})",
    )


def _in_cluster(environ: Mapping[str, str], account: Path) -> Connection:
    """The pod's service account, as client-go's ``rest.InClusterConfig`` reads it."""
    host = environ.get("KUBERNETES_SERVICE_HOST", "")
    port = environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise ConfigError(
            "in-cluster configuration: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT "
            "are not set (not running in a pod? give the kubernetes directive a kubeconfig "
            "or an endpoint)"
        )
    token_file, ca_file = account / "token", account / "ca.crt"
    if not ca_file.is_file():
        raise ConfigError(f"in-cluster configuration: {ca_file}: missing")
    try:
        context = _ssl_context(str(ca_file), None, None, verify=True)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"in-cluster configuration: {ca_file}: {exc}") from exc
    try:
        credentials = TokenFile(token_file)
    except ConfigError as exc:
        raise ConfigError(f"in-cluster configuration: {exc}") from None
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return Connection(
        f"https://{netloc}", context, credentials, source="in-cluster service account"
    )
