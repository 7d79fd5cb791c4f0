"""Start the explorer: load and check everything first, then serve on a local port."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Sequence
from pathlib import Path

from .session import Explorer
from .sources import find_checkpoints, load_explorer_model

log = logging.getLogger(__name__)

STOP_SECONDS = 2


def open_explorer(paths: Sequence[str | Path], data_root: str | Path | None = None, bank: str | Path | None = None) -> Explorer:
    """An ``Explorer`` over the concept models of checkpoints and bench folders, every model's data
    loaded and predicted once, so that any error shows here and not in a page."""
    models = []
    for path in paths:
        for file in find_checkpoints(path):
            model = load_explorer_model(file, bank, skip_without_concepts=not Path(path).is_file())
            if model is not None:
                models.append(model)
    if not models:
        raise ValueError(f"no concept model in {', '.join(map(str, paths))}: the explorer needs cbm, cem, intcem or pcbm checkpoints")
    names = [m.name for m in models]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"two checkpoints are named {repeated[0]!r}: pass files with different names")
    explorer = Explorer(models, data_root)
    for name in explorer.models:
        explorer.prepare(name)
    return explorer


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening, or a clear error when the port is taken or the
    host is not an address of this machine. The server takes this very socket, so the address
    printed is already accepting connections when it is shown."""
    if not 0 <= port < 65536:
        raise ValueError(f"--port must lie in 0..65535 (0: any free port); got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise ValueError(f"port {port} on {host} is in use (another explorer?): pass --port with a free port") from None
        raise ValueError(f"cannot listen on {host}:{port} ({err.strerror or err}); check --host") from None
    return sock


def serve(explorer: Explorer, sock: socket.socket) -> None:
    """Serve ``explorer`` on a socket from ``listen`` until interrupted; warns when other machines can reach it.

    Ctrl+C stops the server after at most ``STOP_SECONDS`` for requests in flight and raises
    ``KeyboardInterrupt``; a request still computing goes on in its worker thread.
    """
    import uvicorn

    from .app import LOCAL_HOSTS, create_app

    host, port = sock.getsockname()[:2]
    # a local server answers to local names only (no DNS rebinding); a specific address to that
    # address too; a wildcard bind (0.0.0.0, ::) was asked to be reached by any name
    hosts = None if host in ("0.0.0.0", "::") else (*LOCAL_HOSTS, host)
    if host not in LOCAL_HOSTS:
        log.warning("serving on %s: anyone who can reach this machine can open the explorer and read its test data; "
                    "use the default --host 127.0.0.1 unless you mean that", host)
    shown = f"[{host}]" if ":" in host else host
    # Ctrl+C gives requests in flight STOP_SECONDS; uvicorn then raises KeyboardInterrupt here
    server = uvicorn.Server(uvicorn.Config(create_app(explorer, hosts), log_level="warning",
                                           timeout_graceful_shutdown=STOP_SECONDS))
    print(f"conceptlab explorer: http://{shown}:{port}/  ({len(explorer.models)} model(s); Ctrl+C stops it)", flush=True)
    with sock:
        server.run(sockets=[sock])
