{{/* The chart's name, or nameOverride. */}}
{{- define "watcher-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The objects' name prefix: fullnameOverride, else the release name (with the chart's name when the
     release name does not contain it already). */}}
{{- define "watcher-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "watcher-operator.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "watcher-operator.labels" -}}
app.kubernetes.io/name: {{ include "watcher-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: jcode-watcher
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "watcher-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "watcher-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "watcher-operator.serviceAccountName" -}}
{{- default (include "watcher-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The namespaces this operator manages (namespaced mode). */}}
{{- define "watcher-operator.namespaces" -}}
{{- if .Values.watch.namespaces -}}
{{- join "," .Values.watch.namespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}
