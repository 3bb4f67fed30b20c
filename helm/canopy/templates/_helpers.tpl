{{/*
Names are fixed, not derived from the release name: canopy is a cluster-wide singleton,
and the webhook configuration, docs and kustomize base all use these names.
*/}}

{{- define "canopy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "canopy.labels" -}}
helm.sh/chart: {{ include "canopy.chart" . }}
app.kubernetes.io/name: canopy
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: canopy
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* What selects the manager's Pods. */}}
{{- define "canopy.selectorLabels" -}}
app.kubernetes.io/name: canopy
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: manager
{{- end }}

{{- define "canopy.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default "canopy" }}
{{- end }}

{{- define "canopy.webhookService" -}}
canopy-webhook
{{- end }}

{{- define "canopy.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
A bundled manifest (files/, copied from config/rbac and webhooks/ by `make manifests`)
with the chart's labels merged into its own.
*/}}
{{- define "canopy.withLabels" -}}
{{- $obj := .obj }}
{{- $labels := merge (dict) ($obj.metadata.labels | default dict) (include "canopy.labels" .root | fromYaml) }}
{{- $_ := set $obj.metadata "labels" $labels }}
{{- toYaml $obj }}
{{- end }}
