"""Exit 0 when an AMQP 0-9-1 broker answers the protocol header on host:port (stdlib only).

A TCP connect alone is not enough: RabbitMQ accepts connections before it can serve them.
"""

import socket
import sys


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.settimeout(2)
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            frame = sock.recv(7)
    except OSError:
        return 1
    # Connection.Start arrives as a method frame (type 1) on channel 0.
    return 0 if len(frame) == 7 and frame[0] == 1 and frame[1:3] == b"\x00\x00" else 1


if __name__ == "__main__":
    sys.exit(main())
