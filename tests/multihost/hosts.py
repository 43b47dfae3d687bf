"""Hosts on this machine: network namespaces on one bridge, each with a hostname of its own.

The test process is the server host (the bridge's address); each other host is a namespace
with one veth cable to the bridge and a UTS namespace for its hostname, so Prefect records
``<hostname>:<pid>`` for its runs as on a real machine. Cutting a host off is taking its
cable down: its processes live on, unreachable, as after a network partition.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import psutil

SUBNET = "10.231.0"
SERVER_IP = f"{SUBNET}.1"


@dataclass(frozen=True)
class Host:
    name: str  # its hostname
    namespace: str
    ip: str
    cable: str  # the bridge side of its veth pair

    def command(self, args: Sequence[str]) -> list[str]:
        """``args`` run on this host: in its network namespace, under its hostname."""
        script = f'hostname {self.name} && exec "$0" "$@"'
        on_host = ["ip", "netns", "exec", self.namespace, "unshare", "--uts", "sh", "-c", script]
        return [*on_host, *args]

    def cut_off(self) -> None:
        _ip("link", "set", self.cable, "down")


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def why_not() -> str | None:
    """Why this machine cannot make hosts (None: it can)."""
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    if not (shutil.which("ip") and shutil.which("unshare")):
        return "needs iproute2 (ip) and util-linux (unshare)"
    probe = f"ef-probe-{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode:
        return f"ip netns add failed: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


def sweep() -> None:
    """Remove the hosts a killed test run left behind (tagged with a pid no longer running)."""
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for namespace, tag in re.findall(r"^(ef-[\w-]+-(\d+))\b", namespaces, re.MULTILINE):
        if not psutil.pid_exists(int(tag)):
            subprocess.run(["ip", "netns", "del", namespace], check=False, capture_output=True)
    for link, tag in re.findall(r"\b(ef(?:br|\d+x)(\d+))\b", links):
        if not psutil.pid_exists(int(tag)):
            subprocess.run(["ip", "link", "del", link], check=False, capture_output=True)


@contextmanager
def hosts(names: Sequence[str]) -> Iterator[dict[str, Host]]:
    """One host per name on a fresh bridge; all removed afterwards."""
    sweep()
    tag = str(os.getpid())
    bridge = f"efbr{tag}"
    made: dict[str, Host] = {}
    _ip("link", "add", bridge, "type", "bridge")
    try:
        _ip("addr", "add", f"{SERVER_IP}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for number, name in enumerate(names, start=2):
            host = Host(name, f"ef-{name}-{tag}", f"{SUBNET}.{number}", f"ef{number}x{tag}")
            _ip("netns", "add", host.namespace)
            made[name] = host
            _ip("link", "add", host.cable, "type", "veth", "peer", "eth0", "netns", host.namespace)
            _ip("link", "set", host.cable, "master", bridge, "up")
            _ip("-n", host.namespace, "addr", "add", f"{host.ip}/24", "dev", "eth0")
            _ip("-n", host.namespace, "link", "set", "eth0", "up")
            _ip("-n", host.namespace, "link", "set", "lo", "up")
        yield made
    finally:
        for host in made.values():
            subprocess.run(["ip", "netns", "del", host.namespace], check=False)
            subprocess.run(["ip", "link", "del", host.cable], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], check=False)
