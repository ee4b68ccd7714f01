{{/*
Expand the name of the chart.
*/}}
{{- define "vitalstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name (truncated at 63 characters: some Kubernetes name fields
are limited to that by the DNS naming spec). If the release name contains the chart name it is used
as the full name.
*/}}
{{- define "vitalstream.fullname" -}}
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

{{/*
Chart name and version as used by the chart label.
*/}}
{{- define "vitalstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: stable across upgrades (a Deployment's selector is immutable).
*/}}
{{- define "vitalstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vitalstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: consumer
{{- end }}

{{/*
Common labels.
*/}}
{{- define "vitalstream.labels" -}}
helm.sh/chart: {{ include "vitalstream.chart" . }}
{{ include "vitalstream.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vitalstream
{{- end }}

{{/*
Name of the ServiceAccount to use.
*/}}
{{- define "vitalstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vitalstream.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Container image reference: digest wins over tag; the tag defaults to the chart's appVersion.
*/}}
{{- define "vitalstream.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The lowest number of replicas that runs: the autoscaler's minimum when one owns the replica count.
*/}}
{{- define "vitalstream.minReplicas" -}}
{{- if .Values.keda.enabled }}
{{- .Values.keda.minReplicaCount }}
{{- else if .Values.hpa.enabled }}
{{- .Values.hpa.minReplicas }}
{{- else }}
{{- .Values.replicas }}
{{- end }}
{{- end }}

{{/*
Checks the schema cannot express with a clear message; included by the Deployment, so every render
runs them.
*/}}
{{- define "vitalstream.validateValues" -}}
{{- if and .Values.keda.enabled .Values.hpa.enabled }}
{{- fail "vitalstream: keda.enabled and hpa.enabled are both true; enable at most one autoscaler (KEDA creates its own HPA for the ScaledObject)" }}
{{- end }}
{{- if and .Values.keda.enabled .Values.keda.authentication.create .Values.keda.authentication.existingName }}
{{- fail "vitalstream: set keda.authentication.create=false when keda.authentication.existingName names an existing TriggerAuthentication" }}
{{- end }}
{{- end }}

{{/*
The consumer's environment: every `config` key as VITALSTREAM_<KEY>, every `config.detection` key as
VITALSTREAM_DETECTION__<KEY> (the pydantic-settings names of service.runtime.config.Settings); null values
are left out so the application default applies. Then the chart-owned settings.
*/}}
{{- define "vitalstream.env" -}}
{{- range $key, $value := omit .Values.config "detection" }}
{{- if not (kindIs "invalid" $value) }}
- name: {{ printf "VITALSTREAM_%s" (upper $key) }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- range $key, $value := (.Values.config.detection | default dict) }}
{{- if not (kindIs "invalid" $value) }}
- name: {{ printf "VITALSTREAM_DETECTION__%s" (upper $key) }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
- name: VITALSTREAM_METRICS_HOST
  value: "0.0.0.0"
- name: VITALSTREAM_METRICS_PORT
  value: {{ .Values.metrics.port | toString | quote }}
- name: VITALSTREAM_WORKER_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
