{{/* Names, labels and the pieces every Radscribe pod shares. */}}

{{- define "radscribe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "radscribe.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "radscribe.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "radscribe.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: radscribe
{{- end -}}

{{- define "radscribe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "radscribe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one component: (dict "root" $ "component" "web") */}}
{{- define "radscribe.componentLabels" -}}
{{ include "radscribe.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "radscribe.componentSelector" -}}
{{ include "radscribe.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "radscribe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "radscribe.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "radscribe.secretName" -}}
{{- default (printf "%s-secrets" (include "radscribe.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "radscribe.dataClaimName" -}}
{{- default (printf "%s-data" (include "radscribe.fullname" .)) .Values.storage.existingClaim -}}
{{- end -}}

{{- define "radscribe.image" -}}
{{- $tag := default .root.Chart.AppVersion .root.Values.image.tag -}}
{{- if .gpu -}}
{{- printf "%s:%s" .root.Values.image.repository (default (printf "%s-cuda" $tag) .root.Values.image.cudaTag) -}}
{{- else -}}
{{- printf "%s:%s" .root.Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
The non-secret settings as RADSCRIBE_* name: value pairs (a YAML map).  The ConfigMap
carries them; the migration hook, which runs before the ConfigMap exists, lists them inline.
*/}}
{{- define "radscribe.configEnv" -}}
{{- $c := .Values.config -}}
RADSCRIBE_ENV: {{ $c.env | quote }}
RADSCRIBE_DATA_DIR: "/var/lib/radscribe"
RADSCRIBE_LOG_JSON: {{ $c.logJson | toString | quote }}
RADSCRIBE_LOG_LEVEL: {{ $c.logLevel | quote }}
RADSCRIBE_HTTP_HOST: "0.0.0.0"
RADSCRIBE_HTTP_PORT: {{ .Values.ports.http | toString | quote }}
RADSCRIBE_METRICS_HOST: "0.0.0.0"
RADSCRIBE_METRICS_PORT: {{ .Values.ports.metrics | toString | quote }}
RADSCRIBE_DICOM_HOST: "0.0.0.0"
RADSCRIBE_DICOM_PORT: {{ .Values.ports.dicom | toString | quote }}
RADSCRIBE_DICOM_AE_TITLE: {{ $c.dicomAeTitle | quote }}
RADSCRIBE_DICOM_ALLOWED_AES: {{ join "," $c.dicomAllowedAes | quote }}
RADSCRIBE_DICOM_QUIET_SECONDS: {{ $c.dicomQuietSeconds | toString | quote }}
RADSCRIBE_DICOM_MAX_ASSOCIATIONS: {{ $c.dicomMaxAssociations | toString | quote }}
RADSCRIBE_DICOM_MIN_FREE_BYTES: {{ $c.dicomMinFreeBytes | int64 | toString | quote }}
RADSCRIBE_HL7_HOST: "0.0.0.0"
RADSCRIBE_HL7_PORT: {{ .Values.ports.hl7 | toString | quote }}
RADSCRIBE_HL7_PROCESSING_ID: {{ $c.hl7ProcessingId | quote }}
{{- if $c.emrHl7Host }}
RADSCRIBE_EMR_HL7_HOST: {{ $c.emrHl7Host | quote }}
RADSCRIBE_EMR_HL7_PORT: {{ $c.emrHl7Port | toString | quote }}
{{- end }}
RADSCRIBE_ORDER_WAIT_SECONDS: {{ $c.orderWaitSeconds | toString | quote }}
RADSCRIBE_ALLOW_DEMO_MODEL: {{ $c.allowDemoModel | toString | quote }}
{{- if $c.checkpoint }}
RADSCRIBE_CHECKPOINT: {{ $c.checkpoint | quote }}
{{- end }}
{{- if $c.whisperModelDir }}
RADSCRIBE_WHISPER_MODEL_DIR: {{ $c.whisperModelDir | quote }}
{{- end }}
{{- if $c.viewerUrlTemplate }}
RADSCRIBE_VIEWER_URL_TEMPLATE: {{ $c.viewerUrlTemplate | quote }}
{{- end }}
{{- range $name, $value := $c.extraEnv }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* The secret settings, each from the Secret (chart-made or the hospital's). */}}
{{- define "radscribe.secretEnv" -}}
- name: RADSCRIBE_SECRET_KEY
  valueFrom:
    secretKeyRef: {name: {{ include "radscribe.secretName" . }}, key: secret-key}
- name: RADSCRIBE_DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ include "radscribe.secretName" . }}, key: database-url}
- name: RADSCRIBE_CELERY_BROKER_URL
  valueFrom:
    secretKeyRef: {name: {{ include "radscribe.secretName" . }}, key: broker-url}
{{- end -}}

{{/* Annotations that roll the pods when settings change. */}}
{{- define "radscribe.podAnnotations" -}}
checksum/config: {{ include "radscribe.configEnv" . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Type and reachability of a Service on a hospital network (DICOM, HL7). */}}
{{- define "radscribe.edgeServiceSpec" -}}
type: {{ .type }}
{{- if or (eq .type "LoadBalancer") (eq .type "NodePort") }}
externalTrafficPolicy: {{ .externalTrafficPolicy }}
{{- end }}
{{- if eq .type "LoadBalancer" }}
{{- with .loadBalancerIP }}
loadBalancerIP: {{ . }}
{{- end }}
{{- with .loadBalancerSourceRanges }}
loadBalancerSourceRanges:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end -}}
