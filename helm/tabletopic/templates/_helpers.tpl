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
{{- include "tabletopic.refuseLiteralSecrets" (dict "path" "config" "value" $config "secret" false) }}
{{- end }}

{{/*
The ConfigMap is readable by anyone who may read ConfigMaps: refuse a literal secret in config.
A key whose last word names a secret (password, secret, token, credential, key, ...) must hold a
${env:} or ${file:} reference; so must a URL's password and a secret-looking URL query parameter.
Recursive: called with (dict "path" "config.kafka" "value" ... "secret" <is the key secret-looking>).
The message names the key, never the value.
*/}}
{{- define "tabletopic.secretKeyPattern" -}}
(^|[._-])(password|passwd|passphrase|pwd|secret|token|credentials?|apikey|authorization|key)$|(^|[._-])(key[._-]pem|user[._-]info|jaas[._-]config|oauthbearer[._-]config|access[._-]key[._-]id|connection[._-]string)$|(^|[._-])private([._-]|$)
{{- end }}

{{- define "tabletopic.refuseLiteralSecrets" -}}
{{- $reference := "\\$\\{(env|file):[^}]*\\}" }}
{{- $fix := "put the value in a Secret (existingSecret) and write ${env:KEY}, or ${file:/etc/tabletopic/secrets/KEY} with mountSecretFiles, in its place: the ConfigMap holds config in clear" }}
{{- if kindIs "map" .value }}
{{- range $key, $child := .value }}
{{- $secret := regexMatch (include "tabletopic.secretKeyPattern" $) (lower (toString $key)) }}
{{- include "tabletopic.refuseLiteralSecrets" (dict "path" (printf "%s.%s" $.path $key) "value" $child "secret" $secret) }}
{{- end }}
{{- else if kindIs "slice" .value }}
{{- range $index, $child := .value }}
{{- include "tabletopic.refuseLiteralSecrets" (dict "path" (printf "%s[%d]" $.path $index) "value" $child "secret" $.secret) }}
{{- end }}
{{- else if not (kindIs "invalid" .value) }}
{{- $text := toString .value }}
{{- /* $${ stands for a literal ${: no reference */}}
{{- $unescaped := regexReplaceAll "\\$\\$\\{" $text "" }}
{{- $literal := regexReplaceAll $reference $unescaped "" }}
{{- if and .secret (ne $text "") (not (regexMatch $reference $unescaped)) }}
{{- fail (printf "%s looks like a secret and holds a literal value: %s" .path $fix) }}
{{- end }}
{{- if regexMatch "://[^/?#@\\s:]+:[^/?#@\\s]+@" $literal }}
{{- fail (printf "%s holds a URL with a literal password: %s (e.g. postgresql://user:${env:DB_PASSWORD}@host/db)" .path $fix) }}
{{- end }}
{{- if regexMatch "(?i)[?&][a-z0-9._-]*(password|passwd|secret|token|credential|apikey|api_key|sig|signature)=[^&${}\\s]" $literal }}
{{- fail (printf "%s holds a URL with a literal secret in its query: %s" .path $fix) }}
{{- end }}
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

{{/*
repository@digest when image.digest is set (the tag is then ignored), else repository:tag.
*/}}
{{- define "tabletopic.image" -}}
{{- $digest := .Values.image.digest | default "" | toString }}
{{- if $digest }}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" $digest) }}
{{- fail (printf "image.digest must be sha256: and 64 lowercase hex digits, as `docker buildx imagetools inspect` prints it; got %q" $digest) }}
{{- end }}
{{- printf "%s@%s" .Values.image.repository $digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}
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
