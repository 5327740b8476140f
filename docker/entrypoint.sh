#!/bin/sh
# The images' entry point: `mtl serve` on the bundle mounted at /bundle, listening on all interfaces.
#
#   docker run -p 8000:8000 -v "$PWD/runs/landcover/quickstart/export:/bundle:ro" mtl-serve:cpu
#   docker run ... mtl-serve:cpu --workers 2 --max_batch_size 32     (options go to `mtl serve`)
#   docker run ... mtl-serve:cpu mtl landcover --help                (a command runs instead)
#
# Settings (environment): MTL_BUNDLE (default /bundle), MTL_HOST (0.0.0.0), MTL_PORT (8000),
# MTL_WORKERS (1), MTL_VENV (/opt/mtl/venv).
set -eu

VENV=${MTL_VENV:-/opt/mtl/venv}
BUNDLE=${MTL_BUNDLE:-/bundle}

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    PATH="$VENV/bin:$PATH" exec "$@"
fi
if [ ! -f "$BUNDLE/bundle.json" ]; then
    echo "entrypoint: error: $BUNDLE: no bundle.json; mount an export bundle there" \
        "(docker run -v \$PWD/runs/<domain>/quickstart/export:/bundle:ro ...) or set MTL_BUNDLE" >&2
    exit 2
fi
exec "$VENV/bin/mtl" serve "$BUNDLE" --host "${MTL_HOST:-0.0.0.0}" --port "${MTL_PORT:-8000}" \
    --workers "${MTL_WORKERS:-1}" "$@"
