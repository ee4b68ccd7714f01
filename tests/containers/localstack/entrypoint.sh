#!/bin/sh
# LocalStack in the foreground; its gateway (127.0.0.1:4566, the container's loopback) also offered as
# the socket file /relay/gateway.sock when /relay is mounted, for a host that shares no network with it.
set -eu
if [ -d /relay ]; then
    python3 /opt/vitalstream/relay.py unix-to-tcp /relay/gateway.sock 4566 &
fi
exec python3 -m localstack.runtime.main
