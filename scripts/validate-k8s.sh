#!/usr/bin/env bash
# Validates deploy/k8s/ offline, as no Kubernetes cluster runs here: every
# manifest against the Kubernetes API schema (PyPI's kubernetes-validate,
# strict: unknown fields are errors), then what pulse needs of them, then a
# deliberately broken copy, which must fail, so the check is known to bite.
#
# kubernetes-validate is used from PATH, else installed with pip into
# target/k8s-venv. Without python3 it skips loudly, unless
# PULSE_REQUIRE_EXTERNAL=1 makes that a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
self=scripts/validate-k8s.sh
# The shell tests' loud skip (a failure when PULSE_REQUIRE_EXTERNAL=1).
# shellcheck source=../tests/docker/lib.sh
source tests/docker/lib.sh

if command -v kubernetes-validate >/dev/null; then
    validate=(kubernetes-validate)
    python=python3
else
    command -v python3 >/dev/null || skip "no python3"
    venv=target/k8s-venv
    if [[ ! -x $venv/bin/kubernetes-validate ]]; then
        python3 -m venv "$venv" || skip "python3 cannot make a venv"
        "$venv/bin/pip" install --quiet kubernetes-validate || skip "pip cannot install kubernetes-validate"
    fi
    validate=("$venv/bin/kubernetes-validate")
    python=$venv/bin/python
fi

manifests=(deploy/k8s/*.yaml)
"${validate[@]}" --strict --quiet "${manifests[@]}"
echo "ok - ${#manifests[@]} manifests valid against the Kubernetes schema"

# What pulse needs of them, beyond the schema.
"$python" - "${manifests[@]}" <<'PY'
import sys
import yaml

docs = [d for path in sys.argv[1:] for d in yaml.safe_load_all(open(path)) if d]
by_kind = {d["kind"]: d for d in docs}
problems = []

def need(cond, what):
    if not cond:
        problems.append(what)

svc = by_kind.get("Service", {}).get("spec", {})
need(svc.get("clusterIP") == "None", "the Service is headless (clusterIP: None)")
need(svc.get("publishNotReadyAddresses") is True, "the Service publishes not-ready addresses")
need({p.get("name") for p in svc.get("ports", [])} >= {"epmd", "dist"}, "the Service names its ports epmd and dist")

pod = by_kind.get("Deployment", {}).get("spec", {}).get("template", {}).get("spec", {})
need(pod.get("securityContext", {}).get("runAsNonRoot") is True, "pods run as non-root")
[c] = pod.get("containers", [{}])
env = {e["name"]: e for e in c.get("env", [])}
need(env.get("PULSE_IP", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP", "PULSE_IP from status.podIP")
need(env.get("PULSE_REGISTRY", {}).get("value", "").startswith("dns:"), "PULSE_REGISTRY is a dns: registry")
need("secretKeyRef" in env.get("PULSE_COOKIE", {}).get("valueFrom", {}), "the cookie from a Secret")
need(c.get("readinessProbe", {}).get("exec", {}).get("command") == ["/pulse", "health"], "readiness from pulse health")
sc = c.get("securityContext", {})
need(sc.get("readOnlyRootFilesystem") is True, "a read-only root filesystem")
need(sc.get("capabilities", {}).get("drop") == ["ALL"], "every capability dropped")
need({p.get("name") for p in c.get("ports", [])} >= {"epmd", "dist"}, "the container names its ports epmd and dist")

for p in problems:
    print(f"FAIL - deploy/k8s: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY
echo "ok - the manifests give pulse what it needs"

# A broken manifest must fail the check.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed 's/^  replicas: 3$/  replicas: three/' deploy/k8s/deployment.yaml >"$tmp/bad-type.yaml"
sed 's/readinessProbe:/readinesProbe:/' deploy/k8s/deployment.yaml >"$tmp/bad-field.yaml"
for bad in "$tmp"/bad-*.yaml; do
    if cmp -s "$bad" deploy/k8s/deployment.yaml; then
        echo "FAIL - could not break $bad" >&2
        exit 1
    fi
    if "${validate[@]}" --strict --quiet "$bad" >/dev/null 2>&1; then
        echo "FAIL - the broken manifest $(basename "$bad") passed validation" >&2
        exit 1
    fi
done
echo "ok - broken manifests fail validation"
