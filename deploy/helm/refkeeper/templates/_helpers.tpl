{{/* The chart's name, at most 63 characters (a DNS label). */}}
{{- define "refkeeper.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's objects' name: <release>-refkeeper, or the release name when it says refkeeper already. */}}
{{- define "refkeeper.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "refkeeper.redisName" -}}
{{- printf "%s-redis" (include "refkeeper.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "refkeeper.claimName" -}}
{{- .Values.persistence.existingClaim | default (printf "%s-repos" (include "refkeeper.fullname" .)) -}}
{{- end -}}

{{/* Labels of every object but the component's. */}}
{{- define "refkeeper.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/name: {{ include "refkeeper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of the server's objects. */}}
{{- define "refkeeper.labels" -}}
{{ include "refkeeper.commonLabels" . }}
app.kubernetes.io/component: server
{{- end -}}

{{/* What selects the server's pods. */}}
{{- define "refkeeper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "refkeeper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{/* What selects the standalone Redis's pod. */}}
{{- define "refkeeper.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "refkeeper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end -}}

{{/* The URL runners fetch from: config.fetchURL, or the Service in the cluster's DNS. */}}
{{- define "refkeeper.fetchURL" -}}
{{- .Values.config.fetchURL | default (printf "http://%s.%s.svc:%d" (include "refkeeper.fullname" .) .Release.Namespace (int .Values.service.port)) -}}
{{- end -}}

{{/*
The rules a deployment must keep, checked when the chart renders so that a
wrong combination fails at `helm install` instead of in production.
*/}}
{{- define "refkeeper.validate" -}}
{{- $v := .Values -}}
{{- if and $v.redis.existingSecret $v.redis.standalone.enabled -}}
{{- fail "redis: set existingSecret (your Redis) or standalone.enabled (one for trying it out), not both" -}}
{{- end -}}
{{- if gt (int $v.replicas) 1 -}}
{{- if not (has "ReadWriteMany" $v.persistence.accessModes) -}}
{{- fail (printf "replicas: %d replicas share one repos root, so persistence.accessModes must hold ReadWriteMany (and its storage class support it); with ReadWriteOnce keep replicas: 1" (int $v.replicas)) -}}
{{- end -}}
{{- if not (or $v.redis.existingSecret $v.redis.standalone.enabled) -}}
{{- fail "replicas: more than one needs one Redis for all (redis.existingSecret, or redis.standalone for trying it out); the embedded one is per process" -}}
{{- end -}}
{{- if not $v.fetchTokenKeys.existingSecret -}}
{{- fail "replicas: more than one needs fetchTokenKeys.existingSecret, or a fetch token signed by one replica is refused by the others" -}}
{{- end -}}
{{- if not $v.tokens.existingSecret -}}
{{- fail "replicas: more than one needs tokens.existingSecret, or each replica generates an API token of its own" -}}
{{- end -}}
{{- end -}}
{{- if lt (int $v.shutdownTimeoutSeconds) 1 -}}
{{- fail "shutdownTimeoutSeconds must be at least 1" -}}
{{- end -}}
{{- if lt (int $v.terminationGraceMarginSeconds) 1 -}}
{{- fail "terminationGraceMarginSeconds must be at least 1: the kubelet must not SIGKILL a shutdown still in its budget" -}}
{{- end -}}
{{- end -}}
