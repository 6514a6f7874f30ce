{{/*
The values of the chart's Secret, and the checksum each workload's pods carry of the keys they read.

Each key takes, in order: its explicit value (secrets.*), the value already stored in the release's
Secret (`lookup`, so that upgrades keep it), or a new random value. A new value is only made where
the chart can tell that none is stored: a render without a cluster (`helm template`, Argo CD,
`--dry-run` without `=server`) gets an empty `lookup` for a Secret that does exist, and a value
generated there would change on every render (new passwords, a new Langfuse encryption key, every
pod restarted). secrets.generate decides:
  cluster (default)  generate only when `lookup` answers (a list of the namespace's Secrets, which
                     Helm's own release storage needs the right to read; it answers, empty, even for
                     a namespace --create-namespace has not created yet) and, on an upgrade, only
                     when the release's Secret is still there (a missing one would mean new
                     passwords for data made with the old ones); else fail, naming what to set
  offline            generate even without a cluster: throwaway renders (CI, previews), new values
                     on every render
  never              never generate: every value from secrets.* or the stored Secret
*/}}

{{/* key of the Secret -> its value under .Values.secrets (generated when empty) */}}
{{- define "swarm.secretFields" -}}
{{- toJson (dict
  "redis-password" "redisPassword"
  "postgres-password" "postgresPassword"
  "clickhouse-password" "clickhousePassword"
  "minio-root-password" "minioRootPassword"
  "qdrant-api-key" "qdrantApiKey"
  "langfuse-salt" "langfuseSalt"
  "langfuse-encryption-key" "langfuseEncryptionKey"
  "nextauth-secret" "nextauthSecret"
  "langfuse-public-key" "langfusePublicKey"
  "langfuse-secret-key" "langfuseSecretKey"
  "langfuse-init-user-password" "langfuseInitUserPassword"
  "proxy-api-keys" "proxyApiKeys"
) -}}
{{- end }}

{{/* A new value for one key: Langfuse's ENCRYPTION_KEY is 64 hex characters, its API keys carry their prefixes. */}}
{{- define "swarm.secretGenerate" -}}
{{- if eq . "langfuse-encryption-key" }}{{ randAlphaNum 64 | sha256sum }}
{{- else if eq . "langfuse-public-key" }}{{ printf "pk-lf-%s" (randAlphaNum 24 | lower) }}
{{- else if eq . "langfuse-secret-key" }}{{ printf "sk-lf-%s" (randAlphaNum 24 | lower) }}
{{- else }}{{ randAlphaNum 32 }}{{ end -}}
{{- end }}

{{/*
Every key's value as JSON, computed once per render and kept in .Values._swarmSecretValues, so that
secrets.yaml and the checksums read the same generated values. Takes the root context.
*/}}
{{- define "swarm.secretValues" -}}
{{- if not (hasKey .Values "_swarmSecretValues") -}}
{{- $name := include "swarm.secretName" . -}}
{{- $given := .Values.secrets -}}
{{- with $given.langfuseEncryptionKey }}{{ if not (regexMatch "^[0-9a-fA-F]{64}$" .) }}{{ fail "secrets.langfuseEncryptionKey must be 64 hex characters (openssl rand -hex 32): Langfuse refuses any other key" }}{{ end }}{{ end -}}
{{- $fields := include "swarm.secretFields" . | fromJson -}}
{{- $missing := list -}}
{{- range $key, $field := $fields }}{{ if not (get $given $field) }}{{ $missing = append $missing $key }}{{ end }}{{ end -}}
{{- $stored := dict -}}
{{- if $missing }}{{ $stored = (lookup "v1" "Secret" .Release.Namespace $name).data | default dict }}{{ end -}}
{{- $unset := list -}}
{{- range $key := $missing }}{{ if not (get $stored $key) }}{{ $unset = append $unset (printf "secrets.%s" (get $fields $key)) }}{{ end }}{{ end -}}
{{- if $unset -}}
{{- $mode := toString (.Values.secrets.generate | default "cluster") -}}
{{- $set := printf "set existingSecret, or %s" (join ", " $unset) -}}
{{- if eq $mode "never" -}}
{{- fail (printf "secrets.generate=never and Secret %s holds no value for them: %s" $name $set) -}}
{{- else if ne $mode "offline" -}}
{{- if not (lookup "v1" "Secret" .Release.Namespace "") -}}
{{- fail (printf "rendered without a cluster (helm template, Argo CD, --dry-run): the values stored in Secret %s cannot be read and new ones would be generated on every render; %s (or secrets.generate=offline for a throwaway render)" $name $set) -}}
{{- else if and .Release.IsUpgrade (not $stored) -}}
{{- fail (printf "upgrading release %s but its Secret %s is gone: new values would not match the data made with the old ones; %s (the values the data was made with)" .Release.Name $name $set) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $values := dict -}}
{{- range $key, $field := $fields -}}
{{- $_ := set $values $key (get $given $field | default (get $stored $key | b64dec) | default (include "swarm.secretGenerate" $key)) -}}
{{- end -}}
{{- with .Values.secrets.openaiApiKey }}{{ $_ := set $values "openai-api-key" . }}{{ end -}}
{{- with .Values.secrets.hfToken }}{{ $_ := set $values "hf-token" . }}{{ end -}}
{{- $_ := set .Values "_swarmSecretValues" $values -}}
{{- end -}}
{{- toJson .Values._swarmSecretValues -}}
{{- end }}

{{/*
The checksum of the chart's Secret keys that these containers read (env secretKeyRef), over their
values: the pods restart when one of their own secrets changes, and only then. Empty when they
read none, or with existingSecret (the chart does not know those values; the pods keep their
annotations and are not restarted by a render). (dict "root" $ "containers" yaml "initContainers" yaml)
*/}}
{{- define "swarm.secretChecksum" -}}
{{- if not .root.Values.existingSecret -}}
{{- $name := include "swarm.secretName" .root -}}
{{- $used := list -}}
{{- range $list := list .containers .initContainers -}}
{{- range $container := ($list | default "[]" | fromYamlArray) -}}
{{- range $env := (get $container "env" | default list) -}}
{{- $ref := dig "valueFrom" "secretKeyRef" dict $env -}}
{{- if eq (toString (get $ref "name")) $name }}{{ $used = append $used (get $ref "key") }}{{ end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $used -}}
{{- $values := include "swarm.secretValues" .root | fromJson -}}
{{- $read := dict -}}
{{- range $key := $used }}{{ $_ := set $read $key (get $values $key | default "") }}{{ end -}}
{{- toJson $read | sha256sum | trunc 16 -}}
{{- end -}}
{{- end -}}
{{- end }}
