#!/bin/sh
# Runs a test program in a PID namespace of its own where this machine allows it (root and
# unshare), so that a test that signals or kills processes can reach only its own, whatever
# bug it finds. Elsewhere the program runs as it is.
if [ "$(id -u)" = 0 ] && unshare -p -f --mount-proc true 2>/dev/null; then
  exec unshare -p -f --mount-proc --kill-child "$@"
fi
exec "$@"
