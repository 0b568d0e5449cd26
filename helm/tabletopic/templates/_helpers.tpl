{{/*
Names and labels.
*/}}
{{- define "tabletopic.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tabletopic.fullname" -}}
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

{{- define "tabletopic.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tabletopic.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tabletopic.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tabletopic.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tabletopic.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tabletopic.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Checks that stop a render with a clear message.
*/}}
{{- define "tabletopic.validate" -}}
{{- if not (has .Values.mode (list "deployment" "sidecar")) }}
{{- fail (printf "mode must be deployment or sidecar, not %q" (toString .Values.mode)) }}
{{- end }}
{{- $grace := float64 .Values.terminationGracePeriodSeconds }}
{{- $shutdown := float64 .Values.shutdownTimeoutSeconds }}
{{- if le $grace $shutdown }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be greater than shutdownTimeoutSeconds (%v): Kubernetes kills the pod at the grace period, before tabletopic has finished its last commit and left the group" .Values.terminationGracePeriodSeconds .Values.shutdownTimeoutSeconds) }}
{{- end }}
{{- if and (gt (int .Values.workers) 1) (le $grace (addf $shutdown 2)) }}
{{- fail (printf "with workers > 1, terminationGracePeriodSeconds (%v) must be greater than shutdownTimeoutSeconds + 2 (%v): the supervisor gives its workers that long to stop" .Values.terminationGracePeriodSeconds (addf $shutdown 2)) }}
{{- end }}
{{- $config := .Values.config | default dict }}
{{- if hasKey $config "shutdown_timeout_seconds" }}
{{- fail "set shutdownTimeoutSeconds, not config.shutdown_timeout_seconds: the chart renders it (and checks it against terminationGracePeriodSeconds)" }}
{{- end }}
{{- if hasKey $config "workers" }}
{{- fail "set workers, not config.workers: the chart renders it" }}
{{- end }}
{{- $http := get $config "http" | default dict }}
{{- if hasKey $http "port" }}
{{- fail "set http.port, not config.http.port: the chart renders it (the probes and the Service use it)" }}
{{- end }}
{{- if and (hasKey $http "enabled") (not $http.enabled) }}
{{- fail "config.http.enabled must stay true: the probes need /healthz and /readyz" }}
{{- end }}
{{- end }}

{{/*
The config file: .Values.config with the keys the chart owns.
*/}}
{{- define "tabletopic.config" -}}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- $http := deepCopy (get $config "http" | default dict) }}
{{- $_ := set $http "port" (int .Values.http.port) }}
{{- $_ = set $config "http" $http }}
{{- $_ = set $config "shutdown_timeout_seconds" .Values.shutdownTimeoutSeconds }}
{{- $_ = set $config "workers" (int .Values.workers) }}
{{- toYaml $config }}
{{- end }}

{{- define "tabletopic.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}

{{/*
The tabletopic container. In sidecar mode, from a chart that depends on this one:
  {{- include "tabletopic.container" .Subcharts.tabletopic | nindent 8 }}
*/}}
{{- define "tabletopic.container" -}}
- name: tabletopic
  image: {{ include "tabletopic.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["run", "--config", "/etc/tabletopic/config.yaml"]
  ports:
    {{- /* Not "http": a sidecar shares the pod's port names with the application. */}}
    - name: tabletopic-http
      containerPort: {{ .Values.http.port }}
      protocol: TCP
  {{- if .Values.existingSecret }}
  envFrom:
    - secretRef:
        name: {{ .Values.existingSecret }}
  {{- end }}
  {{- with .Values.env }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: {{ .Values.http.port }}
    {{- toYaml .Values.livenessProbe | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: {{ .Values.http.port }}
    {{- toYaml .Values.readinessProbe | nindent 4 }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: tabletopic-config
      mountPath: /etc/tabletopic/config.yaml
      subPath: config.yaml
      readOnly: true
    - name: tabletopic-tmp
      mountPath: /tmp
    {{- if and .Values.existingSecret .Values.mountSecretFiles }}
    - name: tabletopic-secrets
      mountPath: /etc/tabletopic/secrets
      readOnly: true
    {{- end }}
{{- end }}

{{/*
The volumes the container mounts (sidecar mode: include beside your own volumes).
*/}}
{{- define "tabletopic.volumes" -}}
- name: tabletopic-config
  configMap:
    name: {{ include "tabletopic.fullname" . }}
- name: tabletopic-tmp
  {{- if .Values.tmpSizeLimit }}
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- if and .Values.existingSecret .Values.mountSecretFiles }}
- name: tabletopic-secrets
  secret:
    secretName: {{ .Values.existingSecret }}
{{- end }}
{{- end }}

{{/*
Restarts the pods when the config changes.
*/}}
{{- define "tabletopic.configChecksum" -}}
{{- include "tabletopic.config" . | sha256sum }}
{{- end }}
