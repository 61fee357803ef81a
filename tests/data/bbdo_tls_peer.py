#!/usr/bin/env python3
"""A BBDO peer over Python's ssl module (OpenSSL), for tests/bbdo_tls.rs.

It does what a Centreon Broker does around TLS: sends or answers the
welcome in clear, then turns the same socket into TLS (client if it
dialled, server if it accepted), sends the BBDO packets it was given (each
in its own zlib chunk when asked, compression running inside TLS), and
reads acknowledgements until it has as many as it expects.

The packets themselves (welcome, events, stop) are built by the Rust test
with brokerstream's encoders and passed in hex, so this script only frames,
compresses and encrypts. One JSON argument; one JSON line out per step:
{"port": N} first when accepting, then {"welcome": hex, "tls_version": ..,
"cipher": .., "acked": N} or {"error": "..."}.
"""

import json
import socket
import ssl
import struct
import sys
import zlib

ANON = "ADH-AES256-GCM-SHA384:ADH-AES256-SHA:ADH-AES128-GCM-SHA256:ADH-AES128-SHA:@SECLEVEL=0"


def out(obj):
    print(json.dumps(obj), flush=True)


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("the peer closed the connection")
        buf += chunk
    return buf


def read_packet(sock):
    header = read_exact(sock, 16)
    size = struct.unpack(">H", header[2:4])[0]
    return header + read_exact(sock, size)


def split_packets(data):
    packets = []
    while data:
        size = struct.unpack(">H", data[2:4])[0]
        packets.append(data[: 16 + size])
        data = data[16 + size :]
    return packets


def chunk(packet):
    z = zlib.compress(packet)
    return struct.pack(">II", 4 + len(z), len(packet)) + z


def read_acks(sock, expect, compressed):
    """Sums acknowledged counts until `expect` (ack 2:2 or pb Ack 2:8)."""
    acked = 0
    plain = b""
    while acked < expect:
        if compressed:
            length = struct.unpack(">I", read_exact(sock, 4))[0]
            body = read_exact(sock, length)
            plain += zlib.decompress(body[4:]) if length > 4 else b""
        else:
            plain += read_packet(sock)
        while len(plain) >= 16:
            size = struct.unpack(">H", plain[2:4])[0]
            if len(plain) < 16 + size:
                break
            ty = struct.unpack(">I", plain[4:8])[0]
            payload = plain[16 : 16 + size]
            plain = plain[16 + size :]
            if ty == 0x00020002:
                acked += struct.unpack(">I", payload[:4])[0]
            elif ty == 0x00020008:
                # protobuf field 1, varint
                n, shift = 0, 0
                for b in payload[1:]:
                    n |= (b & 0x7F) << shift
                    shift += 7
                    if not b & 0x80:
                        break
                acked += n
    return acked


def context(tls, server):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not server:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls["mode"] == "anonymous":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(ANON)
        if server:
            ctx.load_dh_params(tls["dh"])
    else:
        if tls.get("cert"):
            ctx.load_cert_chain(tls["cert"], tls["key"])
        if tls.get("ca"):
            ctx.load_verify_locations(tls["ca"])
            ctx.verify_mode = ssl.CERT_REQUIRED
            if not server and tls.get("hostname"):
                ctx.check_hostname = True
        if server and tls.get("dh"):
            ctx.load_dh_params(tls["dh"])
    return ctx


def main():
    args = json.loads(sys.argv[1])
    if args["role"] == "accept":
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        out({"port": listener.getsockname()[1]})
        listener.settimeout(30)
        sock, _ = listener.accept()
    else:
        sock = socket.create_connection(("127.0.0.1", args["port"]), timeout=30)
    sock.settimeout(30)
    result = {}
    try:
        welcome = bytes.fromhex(args["welcome"])
        if args["role"] == "connect":
            sock.sendall(welcome)
            result["welcome"] = read_packet(sock).hex()
        else:
            result["welcome"] = read_packet(sock).hex()
            sock.sendall(welcome)
        if args.get("garbage"):
            # Not TLS: bytes that no TLS server can take for a ClientHello.
            sock.sendall(bytes.fromhex(args["garbage"]))
        if args.get("drop_mid_handshake"):
            # The first bytes of a ClientHello record, then gone.
            sock.sendall(bytes.fromhex("160301020001"))
            sock.close()
            out(result)
            return
        tls = args.get("tls")
        if tls:
            server = args["role"] == "accept"
            ctx = context(tls, server)
            sock = ctx.wrap_socket(
                sock,
                server_side=server,
                server_hostname=(tls.get("hostname") if not server else None),
            )
            result["tls_version"] = sock.version()
            result["cipher"] = sock.cipher()[0]
        if args.get("wait_stdin"):
            # The test says when its output is ready for the events.
            sys.stdin.readline()
        data = bytes.fromhex(args.get("events", ""))
        if args.get("compress"):
            data = b"".join(chunk(p) for p in split_packets(data))
        sock.sendall(data)
        if args.get("expect_acks"):
            result["acked"] = read_acks(sock, args["expect_acks"], args.get("compress"))
        if tls:
            try:
                sock.unwrap()
            except (ssl.SSLError, OSError):
                pass
        sock.close()
        out(result)
    except Exception as e:  # the test reads the reason
        result["error"] = f"{type(e).__name__}: {e}"
        out(result)
        sys.exit(1)


main()
