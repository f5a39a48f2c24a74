"""Run the Evolution API sandbox: `python -m devtools.evolution_sandbox.server --port 8081` (from
backend/, no Django needed) or `python manage.py run_evolution_sandbox` (same options).

Options fall back to the environment: EVOLUTION_SANDBOX_HOST (127.0.0.1),
EVOLUTION_SANDBOX_PORT (8081), EVOLUTION_SANDBOX_API_KEY (sandbox-global-key),
EVOLUTION_SANDBOX_INSTANCES ("demo:token,other:token2"), EVOLUTION_SANDBOX_NOT_ON_WHATSAPP.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path

from .app import SandboxApp
from .http_handler import SandboxRequestHandler
from .state import SandboxConfig

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081
DEFAULT_API_KEY = "sandbox-global-key"


class SandboxServer(ThreadingHTTPServer):
    """One thread per connection (a hanging request never blocks the others); daemon threads
    so a simulated hang cannot keep the process alive at exit."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], app: SandboxApp) -> None:
        super().__init__(address, SandboxRequestHandler)
        self.app = app

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        host = str(host)  # bytes only for AF_UNIX servers, which this is not
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"


def parse_instances(values: list[str]) -> list[tuple[str, str | None]]:
    """`name:token` (or just `name`: a random token) → [(name, token)]."""
    instances = []
    for value in values:
        name, _, token = value.partition(":")
        if not name:
            raise ValueError(f"bad instance {value!r}: expected name:token")
        instances.append((name, token or None))
    return instances


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="python -m devtools.evolution_sandbox.server", description=__doc__)
    env = os.environ
    parser.add_argument(
        "--host",
        default=env.get("EVOLUTION_SANDBOX_HOST", DEFAULT_HOST),
        help="interface to bind (default loopback; anything else is exposed to the network)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(env.get("EVOLUTION_SANDBOX_PORT", DEFAULT_PORT)),
        help="port (0 picks a free one; see --ready-file)",
    )
    parser.add_argument(
        "--api-key",
        default=env.get("EVOLUTION_SANDBOX_API_KEY", DEFAULT_API_KEY),
        help="the global API key (AUTHENTICATION_API_KEY of the real server)",
    )
    parser.add_argument(
        "--instance",
        action="append",
        default=None,
        metavar="NAME:TOKEN",
        help="create an instance at startup (repeatable)",
    )
    parser.add_argument(
        "--not-on-whatsapp",
        action="append",
        default=None,
        metavar="NUMBER",
        help="a number the sandbox answers 400 exists:false for (repeatable)",
    )
    parser.add_argument(
        "--server-url",
        default=env.get("EVOLUTION_SANDBOX_SERVER_URL", ""),
        help="server_url in webhook envelopes (default: the bound address)",
    )
    parser.add_argument(
        "--ready-file", default=None, help="write {host, port, pid, base_url} as JSON here once listening"
    )
    parser.add_argument("--log-level", default=env.get("EVOLUTION_SANDBOX_LOG_LEVEL", "INFO"))
    return parser


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def create_server(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    api_key: str = DEFAULT_API_KEY,
    instances: list[tuple[str, str | None]] | None = None,
    not_on_whatsapp: list[str] | None = None,
    server_url: str = "",
) -> SandboxServer:
    """Bind (but do not serve yet). Usable in-process too: `threading.Thread(target=server.serve_forever)`."""
    config = SandboxConfig(api_key=api_key)
    app = SandboxApp(config, instances)
    if not_on_whatsapp:
        app.state.update_config({"not_on_whatsapp": list(not_on_whatsapp)})
    server = SandboxServer((host, port), app)
    config.server_url = server_url or server.base_url
    app.state.keep_as_baseline()  # reset() brings back this startup configuration
    return server


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(options: argparse.Namespace, announce: Callable[[str], None] | None = None) -> None:
    """Run until SIGINT/SIGTERM. `announce` receives the one-line banner (stdout in commands)."""
    instances = parse_instances(
        options.instance if options.instance is not None else _env_list("EVOLUTION_SANDBOX_INSTANCES")
    )
    not_on_whatsapp = (
        options.not_on_whatsapp
        if options.not_on_whatsapp is not None
        else _env_list("EVOLUTION_SANDBOX_NOT_ON_WHATSAPP")
    )
    server = create_server(
        options.host,
        options.port,
        api_key=options.api_key,
        instances=instances,
        not_on_whatsapp=not_on_whatsapp,
        server_url=options.server_url,
    )
    if not _is_loopback(options.host):
        logger.warning("evolution sandbox bound to %s: reachable from the network", options.host)

    def stop(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever() to return, so it cannot run on this thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    if options.ready_file:
        path = Path(options.ready_file)
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_text(json.dumps({"host": host, "port": port, "pid": os.getpid(), "base_url": server.base_url}))
        temporary.replace(path)  # atomic: a reader never sees half a file
    names = ", ".join(name for name, _ in instances) or "none (create them with POST /_sandbox/instances)"
    banner = f"Evolution API sandbox listening on {server.base_url} (instances: {names})"
    (announce or logger.info)(banner)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.app.close()
        server.server_close()
        logger.info("evolution sandbox stopped")


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    logging.basicConfig(
        level=options.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    serve(options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
