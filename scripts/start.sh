#!/bin/sh
# Start script of the zone program. In the zone's upload form:
#   start command:   /bin/sh
#   start arguments: /opt/zone-program/bin/start.sh
# The zone may drop PATH and every other variable (protocol/program-callbacks.md §9), so this script
# sets its own environment and uses absolute paths only. It runs the preflight and, when that passes,
# replaces itself with `zone-programd serve`; its own arguments are passed on to `serve`.
set -eu

# The install directory is the parent of this script's directory (/opt/zone-program in the image).
# Worked out without external commands, so it does not depend on PATH.
case "$0" in
  /*) script="$0" ;;
  *) script="$(pwd)/$0" ;;
esac
ZP_HOME="${script%/*/*}"

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
HOME="$ZP_HOME"
LANG=C.UTF-8
LC_ALL=C.UTF-8
LD_LIBRARY_PATH="$ZP_HOME/lib"
export PATH HOME LANG LC_ALL LD_LIBRARY_PATH

cd "$ZP_HOME"
umask 077

if ! "$ZP_HOME/bin/zone-programd" --config "$ZP_HOME/config.toml" preflight; then
  echo "start.sh: the preflight failed; the program is not started (fix the FAIL lines above)" >&2
  exit 1
fi
exec "$ZP_HOME/bin/zone-programd" --config "$ZP_HOME/config.toml" serve "$@"
