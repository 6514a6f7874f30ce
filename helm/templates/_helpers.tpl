{{/* Names, labels, security contexts and the generic workload shared by every component. */}}

{{- define "swarm.chartLabel" -}}
{{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource name of a component: <release>-<component>. Takes (dict "root" $ "component" name). */}}
{{- define "swarm.name" -}}
{{ printf "%s-%s" .root.Release.Name .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "swarm.selectorLabels" -}}
app.kubernetes.io/name: vllm-swarm
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "swarm.labels" -}}
helm.sh/chart: {{ include "swarm.chartLabel" .root }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "swarm.selectorLabels" . }}
{{- end }}

{{- define "swarm.secretName" -}}
{{ .Values.existingSecret | default (printf "%s-secrets" .Release.Name) }}
{{- end }}

{{/* env entry reading one key of the chart's Secret. (dict "root" $ "name" ENV "key" key "optional" bool) */}}
{{- define "swarm.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "swarm.secretName" .root }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}

{{- define "swarm.podSecurityContext" -}}
runAsNonRoot: {{ not (hasKey .root.Values.securityExceptions.runAsNonRoot .component) }}
runAsUser: {{ .cfg.runAsUser | default 1000 }}
runAsGroup: {{ .cfg.runAsUser | default 1000 }}
fsGroup: {{ .cfg.runAsUser | default 1000 }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "swarm.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ not (hasKey .root.Values.securityExceptions.readOnlyRootFilesystem .component) }}
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* A container's image, prefixed with global.imageRegistry when set. (dict "root" $ "image" values) */}}
{{- define "swarm.image" -}}
{{- $registry := trimSuffix "/" (toString (.root.Values.global.imageRegistry | default "")) }}
{{- $repository := .image.repository }}
{{- if $registry }}{{ $repository = printf "%s/%s" $registry $repository }}{{ end }}
image: {{ printf "%s:%s" $repository (toString .image.tag) | quote }}
imagePullPolicy: {{ .image.pullPolicy | default "IfNotPresent" }}
{{- end }}

{{/* A PersistentVolumeClaim spec honouring global.storageClass. (dict "root" $ "size" size) */}}
{{- define "swarm.claimSpec" -}}
accessModes: ["ReadWriteOnce"]
{{- with .root.Values.global.storageClass }}
storageClassName: {{ . | quote }}
{{- end }}
resources:
  requests:
    storage: {{ .size }}
{{- end }}

{{/*
The generic workload. Parameters:
  root, component, cfg   the chart, the component name, its values block
  kind                   Deployment or StatefulSet
  containers             rendered YAML list of containers
  initContainers         optional rendered YAML list
  volumes                optional rendered YAML list of extra volumes (a /tmp emptyDir is always there)
  claims                 optional list of (dict "name" n "size" s) for StatefulSet volumeClaimTemplates
  replicas               omitted when "auto" (an HPA owns the count)
  strategy               optional Deployment strategy (the GPU vLLM Deployments: Recreate)
Scheduling comes from cfg when set: priorityClassName, runtimeClassName, nodeSelector, affinity, tolerations.
*/}}
{{- define "swarm.workload" -}}
apiVersion: apps/v1
kind: {{ .kind }}
metadata:
  name: {{ include "swarm.name" . }}
  labels:
    {{- include "swarm.labels" . | nindent 4 }}
spec:
  {{- if eq .kind "StatefulSet" }}
  serviceName: {{ include "swarm.name" . }}
  {{- end }}
  {{- if ne (toString .replicas) "auto" }}
  replicas: {{ .replicas | default 1 }}
  {{- end }}
  {{- with .strategy }}
  strategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "swarm.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "swarm.selectorLabels" . | nindent 8 }}
      {{- with include "swarm.secretChecksum" (dict "root" .root "containers" .containers "initContainers" .initContainers) }}
      annotations:
        {{- /* only the Secret keys these pods read: a changed password restarts its readers alone */}}
        checksum/secrets: {{ . | quote }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "swarm.name" . }}
      automountServiceAccountToken: false
      securityContext:
        {{- include "swarm.podSecurityContext" . | nindent 8 }}
      {{- with .root.Values.global.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .cfg.priorityClassName }}
      priorityClassName: {{ . | quote }}
      {{- end }}
      {{- with .cfg.runtimeClassName }}
      runtimeClassName: {{ . | quote }}
      {{- end }}
      {{- with .cfg.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .cfg.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .cfg.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .initContainers }}
      initContainers:
        {{- . | nindent 8 }}
      {{- end }}
      containers:
        {{- .containers | nindent 8 }}
      volumes:
        - name: tmp
          emptyDir: {}
        {{- with .volumes }}
        {{- . | nindent 8 }}
        {{- end }}
  {{- if .claims }}
  volumeClaimTemplates:
    {{- range .claims }}
    - metadata:
        name: {{ .name }}
      spec:
        {{- include "swarm.claimSpec" (dict "root" $.root "size" .size) | nindent 8 }}
    {{- end }}
  {{- end }}
{{- include "swarm.disruptionBudget" . }}
{{- end }}

{{/*
A PodDisruptionBudget for a workload that may run more than one pod (replicas > 1, or "auto": an
HPA owns the count), so that a node drain evicts its pods podDisruptionBudget.maxUnavailable at a
time instead of all at once; maxUnavailable (never 0, the schema says) lets drains finish.
Emitted by swarm.workload after the workload, as its own document.
*/}}
{{- define "swarm.disruptionBudget" -}}
{{- if or (eq (toString .replicas) "auto") (gt (int (.replicas | default 1)) 1) }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "swarm.name" . }}
  labels:
    {{- include "swarm.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .root.Values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "swarm.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{/* A ClusterIP Service with the annotations swarm_checks discovers. (root, component, ports, kind, port, model) */}}
{{- define "swarm.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "swarm.name" . }}
  labels:
    {{- include "swarm.labels" . | nindent 4 }}
  annotations:
    swarm.io/kind: {{ .kind | quote }}
    swarm.io/port: {{ .port | quote }}
    {{- with .model }}
    swarm.io/model: {{ . | quote }}
    {{- end }}
spec:
  type: ClusterIP
  selector:
    {{- include "swarm.selectorLabels" . | nindent 4 }}
  ports:
    {{- range .ports }}
    - name: {{ .name }}
      port: {{ .port }}
      targetPort: {{ .targetPort | default .port }}
      protocol: TCP
    {{- end }}
{{- end }}

{{/* Host names other components use, whether the store runs in the chart or is managed outside. */}}
{{- define "swarm.redisHost" -}}
{{- if .Values.redis.enabled }}{{ include "swarm.name" (dict "root" . "component" "redis") }}{{ else }}{{ required "redis.external.host is required when redis.enabled=false" .Values.redis.external.host }}{{ end }}
{{- end }}
{{- define "swarm.redisPort" -}}
{{- if .Values.redis.enabled }}6379{{ else }}{{ .Values.redis.external.port }}{{ end }}
{{- end }}
{{- define "swarm.postgresHost" -}}
{{- if .Values.postgresql.enabled }}{{ include "swarm.name" (dict "root" . "component" "postgresql") }}{{ else }}{{ required "postgresql.external.host is required when postgresql.enabled=false" .Values.postgresql.external.host }}{{ end }}
{{- end }}
{{- define "swarm.postgresPort" -}}
{{- if .Values.postgresql.enabled }}5432{{ else }}{{ .Values.postgresql.external.port }}{{ end }}
{{- end }}
{{- define "swarm.clickhouseUrl" -}}
{{- if .Values.clickhouse.enabled }}http://{{ include "swarm.name" (dict "root" . "component" "clickhouse") }}:8123{{ else }}{{ required "clickhouse.external.url is required when clickhouse.enabled=false (Langfuse v3 needs ClickHouse)" .Values.clickhouse.external.url }}{{ end }}
{{- end }}
{{- define "swarm.clickhouseMigrationUrl" -}}
{{- if .Values.clickhouse.enabled }}clickhouse://{{ include "swarm.name" (dict "root" . "component" "clickhouse") }}:9000{{ else }}{{ required "clickhouse.external.migrationUrl is required when clickhouse.enabled=false (Langfuse v3 needs ClickHouse)" .Values.clickhouse.external.migrationUrl }}{{ end }}
{{- end }}
{{- define "swarm.s3Endpoint" -}}
{{- if .Values.minio.enabled }}http://{{ include "swarm.name" (dict "root" . "component" "minio") }}:9000{{ else }}{{ required "minio.external.endpoint is required when minio.enabled=false" .Values.minio.external.endpoint }}{{ end }}
{{- end }}

{{/* The probe block of an HTTP health endpoint. (path, port, delay, period, failures) */}}
{{- define "swarm.httpProbe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
initialDelaySeconds: {{ .delay | default 5 }}
periodSeconds: {{ .period | default 10 }}
timeoutSeconds: 5
failureThreshold: {{ .failures | default 6 }}
{{- end }}

{{/* The components this release deploys, comma-separated (ServiceAccounts, NetworkPolicies). */}}
{{- define "swarm.components" -}}
{{- $c := list "ray-head" "ray-worker" -}}
{{- if .Values.vllm.phi.enabled }}{{ $c = append $c "vllm-phi" }}{{ end -}}
{{- if .Values.vllm.large.enabled }}{{ $c = append $c "vllm-large" }}{{ end -}}
{{- if .Values.langfuse.enabled }}{{ $c = concat $c (list "langfuse-web" "langfuse-worker") }}{{ end -}}
{{- if .Values.clickhouse.enabled }}{{ $c = append $c "clickhouse" }}{{ end -}}
{{- if .Values.qdrant.enabled }}{{ $c = append $c "qdrant" }}{{ end -}}
{{- if .Values.redis.enabled }}{{ $c = append $c "redis" }}{{ end -}}
{{- if .Values.postgresql.enabled }}{{ $c = append $c "postgresql" }}{{ end -}}
{{- if .Values.minio.enabled }}{{ $c = append $c "minio" }}{{ end -}}
{{- if .Values.proxy.enabled }}{{ $c = append $c "proxy" }}{{ end -}}
{{ join "," $c }}
{{- end }}

{{/*
What Prometheus scrapes when monitoring.prometheus.serviceMonitor.enabled, as a JSON list of
(component, Service port name, container port, path): servicemonitors.yaml renders a
ServiceMonitor for each, networkpolicies.yaml lets monitoring.prometheus.namespaceSelector reach
the container port, so that the two cannot disagree.
*/}}
{{- define "swarm.metricsTargets" -}}
{{- $targets := list -}}
{{- if .Values.monitoring.prometheus.serviceMonitor.enabled -}}
{{- $targets = append $targets (dict "component" "ray-head" "port" "metrics" "containerPort" 8080 "path" "/metrics") -}}
{{- if .Values.vllm.phi.enabled }}{{ $targets = append $targets (dict "component" "vllm-phi" "port" "http" "containerPort" 8000 "path" "/metrics") }}{{ end -}}
{{- if .Values.vllm.large.enabled }}{{ $targets = append $targets (dict "component" "vllm-large" "port" "http" "containerPort" 8000 "path" "/metrics") }}{{ end -}}
{{- if .Values.proxy.enabled }}{{ $targets = append $targets (dict "component" "proxy" "port" "http" "containerPort" 8080 "path" "/metrics") }}{{ end -}}
{{- end -}}
{{ toJson $targets }}
{{- end }}
