#!/usr/bin/env bash
# Validates docker/ without a Docker engine (none runs on CI):
#  1. every YAML file parses (PyYAML);
#  2. `docker compose config` checks compose.yaml, when a client with the
#     compose plugin is installed (it needs no engine); skipped otherwise;
#  3. the schema registry is the project's own (`orchestrix registry serve`
#     from the project image, which installs the `orchestrix` binary) in
#     compose and Kubernetes, with a health check on /healthz;
#  4. the Kubernetes manifests validate against the Kubernetes schemas with
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

echo "[docker] the schema registry is orchestrix registry serve" >&2
python3 - <<'PY'
import sys, yaml
def fail(msg):
    sys.exit(f"schema registry: {msg}")
dockerfile = open("Dockerfile").read()
if "COPY --from=build /out/orchestrix /usr/local/bin/orchestrix" not in dockerfile:
    fail("the image does not install the `orchestrix` binary")
compose = yaml.safe_load(open("compose.yaml"))
services = compose["services"]
for name, svc in services.items():
    if "confluentinc/" in str(svc.get("image", "")):
        fail(f"compose service `{name}` still runs a Confluent image")
reg = services["schema-registry"]
if reg["image"] != services["bank-worker"]["image"]:
    fail("compose runs it from another image than the project's")
if reg["entrypoint"] != ["/usr/local/bin/orchestrix"] or reg["command"][:2] != ["registry", "serve"]:
    fail("compose does not run `orchestrix registry serve`")
if "/healthz" not in " ".join(reg["healthcheck"]["test"]):
    fail("compose has no health check on /healthz")
docs = {d["kind"]: d for d in yaml.safe_load_all(open("k8s/schema-registry.yaml")) if d}
container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
if container["command"] != ["/usr/local/bin/orchestrix"] or container["args"][:2] != ["registry", "serve"]:
    fail("the Kubernetes Deployment does not run `orchestrix registry serve`")
if container["livenessProbe"]["httpGet"]["path"] != "/healthz":
    fail("the Kubernetes Deployment has no liveness probe on /healthz")
if docs["Service"]["spec"]["ports"][0]["port"] != 8081:
    fail("the Kubernetes Service is not on 8081")
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
