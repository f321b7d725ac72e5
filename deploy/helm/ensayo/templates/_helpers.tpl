{{/*
Names, labels and the small lookups every template shares. Per-service helpers take
(dict "root" $ "name" SERVICE), where SERVICE is one of ensayo.serviceNames.
*/}}

{{/* The four services, in the order the templates and loops use. */}}
{{- define "ensayo.serviceNames" -}}
assignment decisioning analysis catalog
{{- end }}

{{/* gRPC port of a service: fixed by the platform contract (CONTRACT.md). */}}
{{- define "ensayo.grpcPort" -}}
{{- get (dict "assignment" "50051" "decisioning" "50052" "analysis" "50053" "catalog" "50054") . -}}
{{- end }}

{{/* Prometheus /metrics port of a service: fixed by the platform contract. */}}
{{- define "ensayo.metricsPort" -}}
{{- get (dict "assignment" "9151" "decisioning" "9152" "analysis" "9153" "catalog" "9154") . -}}
{{- end }}

{{/* Chart name, overridable; 63 characters is the DNS-label limit. */}}
{{- define "ensayo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified release name. A release whose name already contains the chart name is not
repeated: release "ensayo" gives "ensayo", release "prod" gives "prod-ensayo".
*/}}
{{- define "ensayo.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of one service's Deployment, Service, HPA and PDB: FULLNAME-SERVICE. */}}
{{- define "ensayo.componentName" -}}
{{- printf "%s-%s" (include "ensayo.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Chart name and version, as used by the helm.sh/chart label. */}}
{{- define "ensayo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the release. */}}
{{- define "ensayo.labels" -}}
helm.sh/chart: {{ include "ensayo.chart" . }}
{{ include "ensayo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: ensayo
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select every pod of the release (the ServiceMonitor uses them). */}}
{{- define "ensayo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ensayo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on one service's objects: the release labels plus its component. */}}
{{- define "ensayo.componentLabels" -}}
{{ include "ensayo.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/* Labels that select one service's pods; immutable once a Deployment exists. */}}
{{- define "ensayo.componentSelectorLabels" -}}
{{ include "ensayo.selectorLabels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/* The image reference; the tag defaults to the chart's appVersion, a digest wins over both. */}}
{{- define "ensayo.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* ServiceAccount the pods run as. */}}
{{- define "ensayo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ensayo.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Secret and key holding ENSAYO_REDIS_URL: the user's own Secret, or the chart's. */}}
{{- define "ensayo.redisSecretName" -}}
{{- default (include "ensayo.fullname" .) .Values.redis.existingSecret }}
{{- end }}
{{- define "ensayo.redisSecretKey" -}}
{{- if .Values.redis.existingSecret }}{{ .Values.redis.existingSecretKey }}{{ else }}redis-url{{ end }}
{{- end }}

{{/* Secret and key holding ENSAYO_DATABASE_URL: the user's own Secret, or the chart's. */}}
{{- define "ensayo.databaseSecretName" -}}
{{- default (include "ensayo.fullname" .) .Values.database.existingSecret }}
{{- end }}
{{- define "ensayo.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}{{ .Values.database.existingSecretKey }}{{ else }}database-url{{ end }}
{{- end }}

{{/* Secret and key holding the API keys file: the user's own Secret, or the chart's. */}}
{{- define "ensayo.apiKeysSecretName" -}}
{{- default (printf "%s-api-keys" (include "ensayo.fullname" .)) .Values.apiKeys.existingSecret }}
{{- end }}
{{- define "ensayo.apiKeysSecretKey" -}}
{{- if .Values.apiKeys.existingSecret }}{{ .Values.apiKeys.existingSecretKey }}{{ else }}api-keys.yaml{{ end }}
{{- end }}

{{/* Where the API keys file is mounted in every server container. */}}
{{- define "ensayo.apiKeysDir" -}}
/etc/ensayo/api-keys
{{- end }}

{{/*
Hash of everything the pods read from ConfigMaps and Secrets the chart renders, so that a
config change rolls the Deployments (podinfo's checksum/config pattern).
*/}}
{{- define "ensayo.configChecksum" -}}
{{- $config := include (print .Template.BasePath "/configmap.yaml") . }}
{{- $secret := include (print .Template.BasePath "/secret.yaml") . }}
{{- $apiKeys := include (print .Template.BasePath "/api-keys-secret.yaml") . }}
{{- print $config $secret $apiKeys | sha256sum }}
{{- end }}

{{/* Fail the render early on values that would give a broken release. */}}
{{- define "ensayo.validate" -}}
{{- if and (not .Values.redis.existingSecret) (not .Values.redis.url) }}
{{- fail "set redis.url or redis.existingSecret: every service needs ENSAYO_REDIS_URL" }}
{{- end }}
{{- if and (or .Values.catalog.enabled .Values.analysis.enabled) (not .Values.database.existingSecret) (not .Values.database.url) }}
{{- fail "set database.url or database.existingSecret: catalog and analysis need ENSAYO_DATABASE_URL" }}
{{- end }}
{{- $drain := addf (.Values.preStopSleepSeconds | default 0) .Values.config.shutdownGraceSeconds }}
{{- if le (float64 .Values.terminationGracePeriodSeconds) (float64 $drain) }}
{{- fail "terminationGracePeriodSeconds must exceed preStopSleepSeconds + config.shutdownGraceSeconds, or pods are killed mid-drain" }}
{{- end }}
{{- end }}
