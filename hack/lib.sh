# Shared helpers for hack/ scripts. Sourced, never executed.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=hack/versions.env
source "$REPO_ROOT/hack/versions.env"
CACHE_DIR="${FTO_CACHE_DIR:-$REPO_ROOT/.cache}"
K8S_BIN="$CACHE_DIR/k8s/$K8S_VERSION/bin"
K8S_NODE_BIN="$CACHE_DIR/k8s/$K8S_VERSION/node-bin"
ETCD_BIN="$CACHE_DIR/etcd/$ETCD_VERSION/bin"
TOOLS_BIN="$CACHE_DIR/tools/$KUBECTL_LAYER_WHEEL/bin"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need() {
  # need CMD HINT: stop with advice instead of a cryptic "command not found" later on.
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed. $2"
}
