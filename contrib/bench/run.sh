#!/bin/sh
# fpmd side-by-side benchmark: see README.md.  The work is in bench.py.
exec /usr/bin/python3 "$(dirname "$0")/bench.py" "$@"
