#!/usr/bin/env bash
# Copies the manifests that have one source of truth into the places that install them:
#   crds/*.yaml                                  -> config/crds/, helm/canopy/crds/
#   webhooks/validating-webhook-configuration.yaml -> config/webhook/, helm/canopy/files/
#   config/rbac/role.yaml, config/rbac/user_roles.yaml -> helm/canopy/files/
#   helm/canopy/files/grafana-dashboard.json     -> config/prometheus/
#   helm/canopy/files/prometheus-rules.yaml      -> config/prometheus/prometheusrule.yaml
#                                                   (wrapped in a PrometheusRule)
# kustomize may only read files under a kustomization's own directory, and a Helm chart
# only files inside the chart, so both get byte-for-byte copies. `make crds` runs this;
# tests/packaging.rs fails when a copy drifts from its source.
set -euo pipefail
cd "$(dirname "$0")/.."

copy_crds() {
  local dest="$1"
  mkdir -p "$dest"
  # Drop copies of CRDs that no longer exist (the kustomization stays).
  for f in "$dest"/*.canopy.dev.yaml; do
    [[ -e "$f" ]] || continue
    [[ -e "crds/$(basename "$f")" ]] || rm -f "$f"
  done
  cp crds/*.yaml "$dest/"
}

copy_crds config/crds
copy_crds helm/canopy/crds
mkdir -p config/webhook helm/canopy/files
cp webhooks/validating-webhook-configuration.yaml config/webhook/
cp webhooks/validating-webhook-configuration.yaml helm/canopy/files/
cp config/rbac/role.yaml config/rbac/user_roles.yaml helm/canopy/files/
mkdir -p config/prometheus
cp helm/canopy/files/grafana-dashboard.json config/prometheus/
{
  echo "# Made by hack/sync-manifests.sh from helm/canopy/files/prometheus-rules.yaml: edit that."
  printf 'apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: canopy\nspec:\n'
  sed 's/^\(.\)/  \1/' helm/canopy/files/prometheus-rules.yaml
} > config/prometheus/prometheusrule.yaml
