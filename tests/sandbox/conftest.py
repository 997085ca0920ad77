"""Fixtures for the emulator tests.

The emulator needs the ``sandbox`` extra (Starlette, uvicorn, httpx); each test module
that needs it skips itself with ``pytest.importorskip`` and a reason, so a core-only
environment shows the skips in the ``-ra`` summary. Imports of the extra happen
inside the fixtures, never when this file loads.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sandbox_support import ApiClient, Recorder

    from upvest_verify.sandbox import Sandbox


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    """A running emulator, a hundred times faster than real time, HTTP to localhost allowed."""
    from upvest_verify.sandbox import Sandbox

    with Sandbox(port=0, time_scale=0.01, allow_http=True) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def module_sb() -> Iterator[Sandbox]:
    """An emulator shared by a module's checks that leave no state behind."""
    from upvest_verify.sandbox import Sandbox

    with Sandbox(port=0, time_scale=0.01, allow_http=True) as sandbox:
        yield sandbox


@pytest.fixture
def api(sb: Sandbox) -> Iterator[ApiClient]:
    """A signed (v15) management client for the default tenant."""
    from sandbox_support import ApiClient

    client = ApiClient(sb)
    yield client
    client.close()


@pytest.fixture
def receiver() -> Iterator[tuple[Recorder, str]]:
    """A recording receiver on uvicorn: ``(recorder, "http://localhost:<port>")``."""
    from sandbox_support import Recorder, serve

    recorder = Recorder()
    with serve(recorder) as port:
        yield recorder, f"http://localhost:{port}"


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A test CA (trustme) and a certificate for ``localhost``: file paths."""
    trustme = pytest.importorskip("trustme", reason="the HTTPS tests need trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    folder: Path = tmp_path_factory.mktemp("tls")
    ca_file = folder / "ca.pem"
    server_file = folder / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_and_cert_chain_pem.write_to_path(str(server_file))
    return {"ca": ca_file, "server": server_file}
