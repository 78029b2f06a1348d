//! WireGuard device (userspace, boringtun), the gateway bridge (WireGuard over TCP/TLS), the TLS ingress, the dev SNI gateway.
