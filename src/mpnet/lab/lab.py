"""The lab: one simulator per profile on 127.0.0.1, with a throw-away CA, and profiles that point
at them."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import ssl
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

from mpnet.config.model import Profile
from mpnet.errors import UnknownExchange, UsageError, closest
from mpnet.lab.dialects import dialect_for
from mpnet.lab.faults import Fault, parse_fault
from mpnet.lab.profile_export import write_profile
from mpnet.lab.server import ExchangeServer, LabSettings


class Lab:
    """Local simulators of exchanges, one aiohttp server per profile, over TLS or plain.

    Use as ``async with Lab(profiles) as lab:``; then :meth:`profile` gives a copy of a profile
    whose URLs point at its simulator, :attr:`ca_file` the CA that signed the servers.

    Args:
        profiles: the profiles to simulate (their real URLs give the paths to serve).
        tls: serve ``https``/``wss`` with a certificate for ``127.0.0.1`` and ``localhost``
            signed by a CA made at start; False serves ``http``/``ws``.
        faults: exchange name -> fault mode (``"geo_block"``, ``"drop_after:3"``, ...; see
            :mod:`mpnet.lab.faults`).
        host: the address to listen on.
        data_interval, slow_delay, server_ping_interval, ping_frame_interval: timings in seconds
            (data message period, the ``slow`` fault's delay, HTX-style ``{"ping": ts}`` period,
            Binance-style ping frame period).

    Raises:
        UsageError: a fault names an exchange that is not simulated, a fault mode does not
            parse, or two profiles share a name.
    """

    def __init__(
        self,
        profiles: Iterable[Profile],
        *,
        tls: bool = True,
        faults: Mapping[str, str | Fault | None] | None = None,
        host: str = "127.0.0.1",
        data_interval: float = 0.05,
        slow_delay: float = 2.0,
        server_ping_interval: float = 5.0,
        ping_frame_interval: float = 20.0,
    ) -> None:
        self._originals: dict[str, Profile] = {}
        for profile in profiles:
            if profile.name in self._originals:
                raise UsageError(f"lab: profile {profile.name!r} given twice")
            self._originals[profile.name] = profile
        self.tls = tls
        self.host = host
        self.settings = LabSettings(
            data_interval=data_interval,
            slow_delay=slow_delay,
            server_ping_interval=server_ping_interval,
            ping_frame_interval=ping_frame_interval,
        )
        self._faults: dict[str, Fault | None] = {}
        for name, fault in (faults or {}).items():
            parsed = _as_fault(fault)
            key = name.strip().lower()
            if key not in self._originals:
                raise UsageError(_not_simulated(name, parsed, list(self._originals)))
            self._faults[key] = parsed
        self._servers: dict[str, ExchangeServer] = {}
        self._workdir: Path | None = None
        self.ca_file: str | None = None
        self._server_context: ssl.SSLContext | None = None

    # -- life cycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Lab:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Make the CA (with TLS) and start every simulator on a free port."""
        if self._servers:
            return
        self._workdir = Path(tempfile.mkdtemp(prefix="mpnet-lab-"))
        if self.tls:
            self._server_context = self._make_tls()
        for name, profile in self._originals.items():
            self._servers[name] = ExchangeServer(
                profile,
                dialect=dialect_for(name),
                fault=self._faults.get(name),
                host=self.host,
                ssl_context=self._server_context,
                settings=self.settings,
            )
        try:
            await asyncio.gather(*(server.start() for server in self._servers.values()))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every simulator and remove the CA and temporary files."""
        servers = list(self._servers.values())
        self._servers = {}
        await asyncio.gather(*(server.stop() for server in servers), return_exceptions=True)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self.ca_file = None

    @property
    def workdir(self) -> Path | None:
        """The lab's temporary directory (CA file, written profiles); removed by :meth:`stop`."""
        return self._workdir

    def _make_tls(self) -> ssl.SSLContext:
        import trustme

        assert self._workdir is not None
        ca = trustme.CA(organization_name="mpnet lab")
        certificate = ca.issue_cert("127.0.0.1", "localhost")
        ca_path = self._workdir / "mpnet-lab-ca.pem"
        ca.cert_pem.write_to_path(str(ca_path))
        self.ca_file = str(ca_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)
        return context

    # -- one exchange -----------------------------------------------------------------------

    async def stop_exchange(self, name: str) -> None:
        """Stop one simulator (its WebSockets get 1001); its port stays reserved for it."""
        await self._server(name).stop()

    async def start_exchange(self, name: str) -> None:
        """Start one stopped simulator again on the same port."""
        await self._server(name).start()

    async def restart(self, name: str) -> None:
        """Stop and start one simulator on the same port."""
        await self.stop_exchange(name)
        await self.start_exchange(name)

    def set_fault(self, name: str, fault: str | Fault | None) -> None:
        """Change one exchange's fault mode for the requests that follow (None: no fault)."""
        self._server(name).fault = _as_fault(fault)

    def fault(self, name: str) -> Fault | None:
        """One exchange's current fault mode (None: behaves normally)."""
        return self._server(name).fault

    def connections(self, name: str) -> int:
        """How many WebSocket connections one simulator has accepted so far."""
        return self._server(name).connections

    def requests(self, name: str) -> int:
        """How many HTTP requests (REST, bootstrap, upgrade) one simulator has received so far."""
        return self._server(name).requests

    # -- what clients need ------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._originals)

    def profile(self, name: str) -> Profile:
        """A copy of the profile whose REST and WebSocket URLs point at its simulator.

        The copy has no ``rate_limit``: a simulator has no public limit to stay under, so the
        demo is not paced like the real exchange (a 429 or 418 from a fault is still obeyed).
        """
        server = self._server(name)
        original = self._originals[server.profile.name]
        rest = original.rest
        if rest is not None:
            rest = dataclasses.replace(rest, base_url=server.base_url)
        websocket = original.websocket
        if websocket is not None and server.ws_url is not None:
            websocket = dataclasses.replace(websocket, url=server.ws_url)
        return dataclasses.replace(
            original,
            rest=rest,
            websocket=websocket,
            network=None,
            source=f"<lab>/{original.name}.yaml",
            rate_limit=None,
        )

    def profiles(self) -> list[Profile]:
        return [self.profile(name) for name in self.names()]

    def urls(self) -> dict[str, tuple[str | None, str | None]]:
        """Exchange name -> (REST health URL, WebSocket URL) of its simulator."""
        return {
            p.name: (
                p.rest.health_url if p.rest else None,
                p.websocket.url if p.websocket else None,
            )
            for p in self.profiles()
        }

    def write_profiles_dir(self, path: str | Path) -> Path:
        """Write the lab profiles as YAML into ``path`` (created), for ``--profiles DIR``."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        for profile in self.profiles():
            write_profile(profile, directory / f"{profile.name}.yaml")
        return directory

    def client_ssl_context(self) -> ssl.SSLContext | None:
        """A client context that trusts the lab CA (None without TLS)."""
        if self.ca_file is None:
            return None
        return ssl.create_default_context(cafile=self.ca_file)

    def _known(self, name: str) -> str:
        key = name.strip().lower()
        if key not in self._originals:
            raise UnknownExchange(name, list(self._originals))
        return key

    def _server(self, name: str) -> ExchangeServer:
        key = self._known(name)
        if key not in self._servers:
            raise UsageError("lab: not started")
        return self._servers[key]


def _not_simulated(name: str, fault: Fault | None, simulated: list[str]) -> str:
    """``--fault okx=waf`` for a run of ``deribit`` only: the name may be right, just not here."""
    listed = ", ".join(sorted(simulated)) or "none"
    text = (
        f"--fault {name.strip()}={fault or ''}: {name.strip()!r} is not among the probed exchanges"
    )
    match = closest(name, simulated)
    if match is not None:
        return f"{text} ({listed}); did you mean {match!r}?"
    return f"{text} ({listed}); name it too, or drop this --fault"


def _as_fault(fault: str | Fault | None) -> Fault | None:
    if fault is None or isinstance(fault, Fault):
        return fault
    return parse_fault(fault)
