#!/bin/sh
# Runs a test program in a PID namespace of its own where this machine allows it (root and
# unshare), so that a test that signals or kills processes can reach only its own, whatever
# bug it finds; and with a /dev/shm of its own, so that what one program finds there (or sees
# being created there) is its own, though programs running side by side have the same pids.
# Elsewhere the program runs as it is.
if [ "$(id -u)" = 0 ] && unshare -p -f -m --mount-proc true 2>/dev/null; then
  exec unshare -p -f -m --mount-proc --kill-child sh -c \
    'mount -t tmpfs -o mode=1777 shmgemm-test /dev/shm 2>/dev/null; exec "$@"' isolated "$@"
fi
exec "$@"
