# Shared settings for the scripts in this folder. Source it; do not run it.
# Everything downloaded or built outside cargo goes under $FORTROS_WORK
# (default: .work/ in the checkout, which git ignores).
FORTROS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FORTROS_WORK=${FORTROS_WORK:-$FORTROS_ROOT/.work}
mkdir -p "$FORTROS_WORK"
say() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { say "$*"; exit 1; }
