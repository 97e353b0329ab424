#!/usr/bin/env bash
# Validates docker/ without a Docker engine (none runs on CI):
#  1. every YAML file parses (PyYAML);
#  2. `docker compose config` checks compose.yaml, when a client with the
#     compose plugin is installed (it needs no engine); skipped otherwise;
#  3. the Kubernetes manifests validate against the Kubernetes schemas with
#     `kubernetes-validate --strict` (PyPI, installed on demand, pinned); the
#     KEDA ScaledObject is a CRD that it has no schema for (a warning).
# The Rust test `orchestrix-worker::docker_files` checks the rest: ports,
# probes, grace periods and worker configs that agree with the code.
set -euo pipefail
cd "$(dirname "$0")"

KUBERNETES_VALIDATE_VERSION=1.37.0

# kubernetes-validate brings PyYAML, which the YAML check below needs too.
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "[docker] installing kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}" >&2
  python3 -m pip install --quiet --disable-pip-version-check "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}"
fi
python3 -c "import yaml" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check pyyaml

echo "[docker] YAML well-formed" >&2
python3 - <<'PY'
import glob, sys, yaml
files = sorted(glob.glob("**/*.yaml", recursive=True) + glob.glob("**/*.yml", recursive=True))
for f in files:
    with open(f) as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d is not None]
    if not docs:
        sys.exit(f"{f}: no YAML document")
    print(f"  {f}: {len(docs)} document(s)", file=sys.stderr)
PY

if docker compose version >/dev/null 2>&1; then
  echo "[docker] docker compose config" >&2
  docker compose -f compose.yaml config --quiet
else
  echo "[docker] skipping 'docker compose config': no compose plugin on this machine" >&2
fi

echo "[docker] kubernetes-validate --strict k8s/*.yaml" >&2
kubernetes-validate --strict --kubernetes-version 1.32.0 k8s/*.yaml
echo "[docker] ok" >&2
