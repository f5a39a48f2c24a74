"""Whether an AMQP 0-9-1 broker answers the protocol header on host:port (stdlib only).

A TCP connect alone is not enough: RabbitMQ accepts connections before it can serve them.
`scripts/services.sh` runs this file (exit 0 when the broker answers); the tests' second broker
imports `answers` (a subprocess per poll cost seconds each on a loaded box).
"""

from __future__ import annotations

import socket
import sys


def answers(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            frame = sock.recv(7)
    except OSError:
        return False
    # Connection.Start arrives as a method frame (type 1) on channel 0.
    return len(frame) == 7 and frame[0] == 1 and frame[1:3] == b"\x00\x00"


if __name__ == "__main__":
    sys.exit(0 if answers(sys.argv[1], int(sys.argv[2])) else 1)
