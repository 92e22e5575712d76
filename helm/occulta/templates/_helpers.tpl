{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "occulta.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "occulta.fullname" -}}
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

{{- define "occulta.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels for one component: (dict "root" $ "component" "api"). */}}
{{- define "occulta.selectorLabels" -}}
app.kubernetes.io/name: {{ include "occulta.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "occulta.labels" -}}
{{ include "occulta.selectorLabels" . }}
helm.sh/chart: {{ include "occulta.chart" .root }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: occulta
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "occulta.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "occulta.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference: (dict "root" $ "image" .Values.image.api). A digest wins over a tag. */}}
{{- define "occulta.image" -}}
{{- $registry := .root.Values.image.registry -}}
{{- $repo := ternary (printf "%s/%s" $registry .image.repository) .image.repository (ne $registry "") -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repo .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "occulta.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
OCCULTA_* environment for one component: (dict "root" $ "device" "cpu" "omp" 1 "concurrency" 1).
Passwords are declared before the URLs that use them: Kubernetes expands $(VAR) only for
variables defined earlier in the same list, so no credential is ever written into the manifest.
*/}}
{{- define "occulta.env" -}}
{{- $v := .root.Values -}}
{{- $db := $v.externalDatabase -}}
{{- $redis := $v.externalRedis -}}
{{- $s3 := $v.externalS3 -}}
- name: OCCULTA_DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ required "externalDatabase.existingSecret is required" $db.existingSecret }}
      key: {{ $db.existingSecretPasswordKey }}
- name: OCCULTA_DATABASE_URL
  value: {{ printf "postgresql+psycopg://%s:$(OCCULTA_DATABASE_PASSWORD)@%s:%d/%s?sslmode=%s" $db.user (required "externalDatabase.host is required" $db.host) (int $db.port) $db.database $db.sslmode | quote }}
{{- $scheme := ternary "rediss" "redis" $redis.tls }}
{{- $query := ternary "?ssl_cert_reqs=required" "" $redis.tls }}
{{- if $redis.auth.enabled }}
- name: OCCULTA_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ required "externalRedis.auth.existingSecret is required" $redis.auth.existingSecret }}
      key: {{ $redis.auth.existingSecretPasswordKey }}
- name: OCCULTA_BROKER_URL
  value: {{ printf "%s://:$(OCCULTA_REDIS_PASSWORD)@%s:%d/%d%s" $scheme $redis.host (int $redis.port) (int $redis.database) $query | quote }}
{{- else }}
- name: OCCULTA_BROKER_URL
  value: {{ printf "%s://%s:%d/%d%s" $scheme $redis.host (int $redis.port) (int $redis.database) $query | quote }}
{{- end }}
- name: OCCULTA_STORAGE_URL
  value: {{ ternary (printf "s3://%s/%s" $s3.bucket $s3.prefix) (printf "s3://%s" $s3.bucket) (ne $s3.prefix "") | quote }}
{{- with $s3.endpointUrl }}
- name: OCCULTA_S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
- name: OCCULTA_S3_REGION
  value: {{ $s3.region | quote }}
- name: OCCULTA_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ required "externalS3.existingSecret is required" $s3.existingSecret }}
      key: {{ $s3.existingSecretAccessKeyIdKey }}
- name: OCCULTA_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $s3.existingSecret }}
      key: {{ $s3.existingSecretSecretAccessKeyKey }}
- name: OCCULTA_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ required "config.secretKey.existingSecret is required" $v.config.secretKey.existingSecret }}
      key: {{ $v.config.secretKey.existingSecretKey }}
- name: OCCULTA_ENV
  value: {{ $v.config.env | quote }}
- name: OCCULTA_MAX_UPLOAD_BYTES
  value: {{ $v.config.maxUploadBytes | int64 | quote }}
- name: OCCULTA_DATA_DIR
  value: {{ $v.config.dataDir | quote }}
- name: OCCULTA_DEVICE
  value: {{ .device | quote }}
- name: OCCULTA_WORKER_CONCURRENCY
  value: {{ .concurrency | int | quote }}
{{- $fair := $v.fairness }}
{{- $keda := $v.worker.autoscaling.keda }}
{{- $pods := ternary $keda.maxReplicaCount $v.worker.replicaCount $keda.enabled }}
- name: OCCULTA_DISPATCH_SLOTS
  value: {{ ternary $fair.dispatchSlots (mul $pods $v.worker.concurrency) (gt (int $fair.dispatchSlots) 0) | int | quote }}
- name: OCCULTA_TENANT_MAX_RUNNING
  value: {{ $fair.tenantMaxRunning | int | quote }}
- name: OCCULTA_TENANT_MAX_ACTIVE
  value: {{ $fair.tenantMaxActive | int | quote }}
- name: OCCULTA_TENANT_RETRY_AFTER_SECONDS
  value: {{ $fair.retryAfterSeconds | int | quote }}
{{- if gt (float64 $fair.workerGpuMemoryGiB) 0.0 }}
- name: OCCULTA_WORKER_GPU_MEMORY_GIB
  value: {{ $fair.workerGpuMemoryGiB | toString | quote }}
{{- end }}
- name: OMP_NUM_THREADS
  value: {{ .omp | int | quote }}
- name: HF_HUB_OFFLINE
  value: "1"
{{- with $v.config.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Writable scratch: the root filesystem is read-only. */}}
{{- define "occulta.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: {{ .Values.config.dataDir }}
{{- end -}}

{{- define "occulta.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
- name: data
  emptyDir:
    sizeLimit: {{ .Values.config.dataDirSizeLimit }}
{{- end -}}

{{/* Pod-level settings every workload shares. */}}
{{- define "occulta.podSpecCommon" -}}
serviceAccountName: {{ include "occulta.serviceAccountName" . }}
automountServiceAccountToken: false
{{- include "occulta.imagePullSecrets" . }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{- define "occulta.httpProbe" -}}
httpGet:
  path: {{ .path }}
  port: http
initialDelaySeconds: {{ .initialDelaySeconds }}
periodSeconds: {{ .periodSeconds }}
timeoutSeconds: {{ .timeoutSeconds }}
failureThreshold: {{ .failureThreshold }}
successThreshold: {{ .successThreshold }}
{{- end -}}
