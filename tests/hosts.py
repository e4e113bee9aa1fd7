"""Test hosts: network namespaces joined by veth pairs to one bridge, so that processes of a test run on
separate "machines" that share nothing but the network (no loopback, no temp folder, no Unix sockets).

The machine's PostgreSQL listens on 127.0.0.1 only; a TCP forwarder on the bridge's address carries
connections from the hosts to it, so every byte between a host and the database crosses a veth pair.

Making namespaces needs root (CI runs as root); ``available()`` says whether this machine can.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

SUBNET = "10.231.7"
BRIDGE_ADDRESS = f"{SUBNET}.1"


def _ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *(["netns", "exec", netns, "ip"] if netns else []), *args]
    subprocess.run(command, check=True, capture_output=True, timeout=30)


def available() -> str | None:
    """None when namespaces can be made here; else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"asdprobe{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", name)
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"`ip netns add` failed: {exc}"
    _ip("netns", "delete", name)
    return None


@dataclass(frozen=True)
class Host:
    name: str  # the namespace
    address: str

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run on this host."""
        return ["ip", "netns", "exec", self.name, *argv]


class _Forwarder:
    """Accepts on ``listen`` and pipes each connection to ``target``, both ways, until either side closes.
    ``cut()`` drops every connection and refuses new ones until ``restore()``."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self._target = target
        self._server = socket.create_server(listen, reuse_port=False)
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._cut = False
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self._cut:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)

    def cut(self) -> None:
        self._cut = True
        with self._lock:
            for end in list(self._open):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._server.close()


class Network:
    """A bridge and ``count`` hosts on it, torn down on ``close`` (and left by nothing else)."""

    def __init__(self, count: int) -> None:
        tag = uuid.uuid4().hex[:5]
        self.bridge = f"asdbr{tag}"
        self.hosts: list[Host] = []
        self.forwarders: list[_Forwarder] = []
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{BRIDGE_ADDRESS}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for n in range(count):
                name = f"asd{tag}h{n}"
                outer, inner = f"asd{tag}o{n}", f"asd{tag}i{n}"
                address = f"{SUBNET}.{10 + n}"
                _ip("netns", "add", name)
                _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
                _ip("link", "set", outer, "master", self.bridge)
                _ip("link", "set", outer, "up")
                _ip("link", "set", inner, "netns", name)
                _ip("addr", "add", f"{address}/24", "dev", inner, netns=name)
                _ip("link", "set", inner, "up", netns=name)
                _ip("link", "set", "lo", "up", netns=name)
                self.hosts.append(Host(name, address))
        except BaseException:
            self.close()
            raise

    def forward(self, port: int, target: tuple[str, int]) -> _Forwarder:
        """Make ``target`` (a service of this machine's loopback) reachable from the hosts at
        ``BRIDGE_ADDRESS:port``."""
        forwarder = _Forwarder((BRIDGE_ADDRESS, port), target)
        self.forwarders.append(forwarder)
        return forwarder

    def close(self) -> None:
        for forwarder in self.forwarders:
            forwarder.close()
        for host in self.hosts:
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "delete", host.name)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "delete", self.bridge)


@contextlib.contextmanager
def network(count: int) -> Iterator[Network]:
    net = Network(count)
    try:
        yield net
    finally:
        net.close()
