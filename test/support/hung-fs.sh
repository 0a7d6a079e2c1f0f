#!/bin/sh
# hung-fs.sh MOUNTPOINT COMMAND [ARG...]
# hung-fs.sh MOUNTPOINT --while PID
#
# Makes MOUNTPOINT (an existing directory or regular file) the root of a FUSE file system that never
# answers: nothing reads its /dev/fuse descriptor, so every call that reaches it (stat, open, a lookup)
# blocks until the connection is closed, as on an NFS mount whose server is gone or a FUSE daemon that
# hangs. Run it in a private mount namespace (unshare -m, or nsenter into one) so nobody else sees it.
#
# First form: runs COMMAND in place of this shell (same pid); a helper keeps the descriptor open while
# COMMAND runs and closes it once COMMAND exits, which aborts the connection; the namespace (with the
# mount) goes away with its last process. Second form: mounts, prints "mounted", and holds the
# descriptor until process PID exits. Needs root (CAP_SYS_ADMIN) and /dev/fuse; exits 97 without
# changing anything when mounting is not possible.
set -eu
mnt=$1
shift
# A PATH entry below the mount point would hang every command lookup from here on (npm puts
# <repo>/node_modules/.bin first): drop such entries.
path=
saved_ifs=$IFS
IFS=:
for dir in $PATH; do
  case "$dir/" in "$mnt"/*) ;; *) path=${path:+$path:}$dir ;; esac
done
IFS=$saved_ifs
PATH=$path
export PATH
if [ -d "$mnt" ]; then rootmode=40000; else rootmode=100000; fi
exec 3<>/dev/fuse || exit 97
mount -i -t fuse -o "fd=3,rootmode=$rootmode,user_id=0,group_id=0" leader-run-hung "$mnt" || exit 97
if [ "${1-}" = "--while" ]; then
  echo mounted
  exec </dev/null >/dev/null 2>&1
  while kill -0 "$2"; do sleep 0.2; done
  exit 0
fi
# $$ stays our pid after the exec below: the helper watches COMMAND itself.
(
  exec </dev/null >/dev/null 2>&1
  while kill -0 $$; do sleep 0.2; done
) &
exec 3>&-
exec "$@"
