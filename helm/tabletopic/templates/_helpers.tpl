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
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
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
{{- $moved := dict "workers" "config.workers" "http" "config.http.port" "shutdownTimeoutSeconds" "config.shutdown_timeout_seconds" "terminationGracePeriodSeconds" "terminationGraceMarginSeconds (the grace period is config.shutdown_timeout_seconds plus this margin)" }}
{{- range $old, $new := $moved }}
{{- if hasKey $.Values $old }}
{{- fail (printf "the value %s is gone since chart 0.2.0: set %s instead (each setting lives in one place, the config; see the chart's README, Upgrading)" $old $new) }}
{{- end }}
{{- end }}
{{- $config := .Values.config | default dict }}
{{- /* A ${env:} reference would do for tabletopic, but the chart derives pod settings from these two. */}}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?$" (toString (get $config "shutdown_timeout_seconds" | default ""))) }}
{{- fail "config.shutdown_timeout_seconds must be set to a number of seconds: the pod's terminationGracePeriodSeconds is derived from it" }}
{{- end }}
{{- $http := get $config "http" | default dict }}
{{- if not (regexMatch "^[1-9][0-9]*$" (toString (get $http "port" | default ""))) }}
{{- fail "config.http.port must be set to a port number: the container port, the probes and the NetworkPolicy use it" }}
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
The config file, as given: the single source of workers, http.port and shutdown_timeout_seconds.
*/}}
{{- define "tabletopic.config" -}}
{{- toYaml (.Values.config | default dict) }}
{{- end }}

{{/*
The HTTP port (/healthz, /readyz, /metrics), from the config.
*/}}
{{- define "tabletopic.httpPort" -}}
{{- int .Values.config.http.port }}
{{- end }}

{{/*
The pod's grace period: the config's shutdown bound, rounded up, plus the margin (which covers the
supervisor's own 2 s on top of the bound, and the exit).
*/}}
{{- define "tabletopic.terminationGracePeriodSeconds" -}}
{{- add (int (ceil .Values.config.shutdown_timeout_seconds)) (int .Values.terminationGraceMarginSeconds) }}
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
      containerPort: {{ include "tabletopic.httpPort" . }}
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
      port: {{ include "tabletopic.httpPort" . }}
    {{- toYaml .Values.livenessProbe | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: {{ include "tabletopic.httpPort" . }}
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
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
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
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Restarts the pods when the config changes.
*/}}
{{- define "tabletopic.configChecksum" -}}
{{- include "tabletopic.config" . | sha256sum }}
{{- end }}
