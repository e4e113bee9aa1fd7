"""Test hosts: network namespaces joined by veth pairs to one bridge, so that processes of a test run on
separate "machines" that share nothing but the network (no loopback, no temp folder, no Unix sockets).

The machine's PostgreSQL listens on 127.0.0.1 only; a TCP forwarder on the bridge's address carries
connections from the hosts to it, so every byte between a host and the database crosses a veth pair.

Making namespaces needs root (CI runs as root); ``available()`` says whether this machine can.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from db_proxy import TcpProxy

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


class Network:
    """A bridge and ``count`` hosts on it, torn down on ``close`` (and left by nothing else)."""

    def __init__(self, count: int) -> None:
        tag = uuid.uuid4().hex[:5]
        self.bridge = f"asdbr{tag}"
        self.hosts: list[Host] = []
        self.forwarders: list[TcpProxy] = []
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

    def forward(self, port: int, target: tuple[str, int]) -> TcpProxy:
        """Make ``target`` (a service of this machine's loopback) reachable from the hosts at
        ``BRIDGE_ADDRESS:port``."""
        forwarder = TcpProxy(*target, listen_host=BRIDGE_ADDRESS, port=port).start()
        self.forwarders.append(forwarder)
        return forwarder

    def close(self) -> None:
        for forwarder in self.forwarders:
            forwarder.cut()
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
