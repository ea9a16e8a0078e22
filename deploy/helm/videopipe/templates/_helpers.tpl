{{/* Names, labels and the pieces every videopipe pod shares. */}}

{{- define "videopipe.fullname" -}}
{{- if contains "videopipe" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-videopipe" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "videopipe.labels" -}}
app.kubernetes.io/name: videopipe
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "videopipe.image" -}}
{{ printf "%s:%s" .Values.image.repository .Values.image.tag | quote }}
{{- end -}}

{{- define "videopipe.gpuImage" -}}
{{ printf "%s:%s" .Values.image.repository .Values.image.gpuTag | quote }}
{{- end -}}

{{- define "videopipe.claim" -}}
{{ .Values.storage.existingClaim | default (printf "%s-data" (include "videopipe.fullname" .)) }}
{{- end -}}

{{/* GPUs the model actors may take in all: GPU workers x GPUs per worker. */}}
{{- define "videopipe.gpus" -}}
{{- if .Values.ray.gpuWorkers.enabled -}}
{{ mul .Values.ray.gpuWorkers.replicas .Values.ray.gpuWorkers.gpusPerWorker }}
{{- else -}}
0
{{- end -}}
{{- end -}}

{{/* Pod-level settings: non-root (the image's user 1000), pull secrets. */}}
{{- define "videopipe.podSpec" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 1000
  fsGroup: 1000
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Environment of every container (settings/__init__.py names); credentials from Secrets. */}}
{{- define "videopipe.env" -}}
- name: DATA_DIR
  value: /data
- name: METRICS_HOST
  value: 0.0.0.0
- name: DECODE_RESOURCE
  value: decode
- name: INDEX_RESOURCE
  value: index
{{- if .Values.ray.gpuWorkers.enabled }}
- name: MODEL_RESOURCE
  value: model
{{- end }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.secretName }}
      key: {{ .Values.redis.secretKey }}
- name: ELASTICSEARCH_URL
  value: {{ .Values.elasticsearch.url | quote }}
- name: ELASTICSEARCH_INDEX
  value: {{ .Values.elasticsearch.index | quote }}
- name: ELASTICSEARCH_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.elasticsearch.secretName }}
      key: {{ .Values.elasticsearch.usernameKey }}
- name: ELASTICSEARCH_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.elasticsearch.secretName }}
      key: {{ .Values.elasticsearch.passwordKey }}
{{- if .Values.elasticsearch.caSecretName }}
- name: ELASTICSEARCH_CA_CERTS
  value: /etc/videopipe/elasticsearch-ca/ca.crt
{{- end }}
- name: KIBANA_URL
  value: {{ .Values.kibana.url | quote }}
{{- end -}}

{{- define "videopipe.volumeMounts" -}}
- name: data
  mountPath: /data
{{- if .Values.elasticsearch.caSecretName }}
- name: elasticsearch-ca
  mountPath: /etc/videopipe/elasticsearch-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "videopipe.volumes" -}}
- name: data
  persistentVolumeClaim:
    claimName: {{ include "videopipe.claim" . }}
{{- if .Values.elasticsearch.caSecretName }}
- name: elasticsearch-ca
  secret:
    secretName: {{ .Values.elasticsearch.caSecretName }}
{{- end }}
{{- end -}}
