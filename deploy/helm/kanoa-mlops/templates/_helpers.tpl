{{/* Names and labels shared by every template. */}}
{{- define "kanoa.name" -}}
{{- default "kanoa-mlops" .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "kanoa.fullname" -}}
{{- if contains (include "kanoa.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "kanoa.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kanoa.labels" -}}
app.kubernetes.io/name: {{ include "kanoa.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kanoa.selector" -}}
app.kubernetes.io/name: {{ include "kanoa.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* image: "repo:tag" from a {repository, tag} map */}}
{{- define "kanoa.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{- define "kanoa.podSecurity" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "kanoa.containerSecurity" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end -}}

{{/* PostgreSQL URL for the gateway and the rag-init Job (password from
     PGPASSWORD, set from the Secret) */}}
{{- define "kanoa.databaseUrl" -}}
{{- printf "postgresql://kanoa@%s-pgvector:5432/kanoa" (include "kanoa.fullname" .) -}}
{{- end -}}

{{/* env for the database password or URL */}}
{{- define "kanoa.databaseEnv" -}}
{{- if .Values.externalDatabase.enabled }}
- name: KANOA_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalDatabase.urlSecret.name }}
      key: {{ .Values.externalDatabase.urlSecret.key }}
{{- else if .Values.pgvector.enabled }}
- name: KANOA_DATABASE_URL
  value: {{ include "kanoa.databaseUrl" . | quote }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.pgvector.passwordSecret.name }}
      key: {{ .Values.pgvector.passwordSecret.key }}
{{- end }}
{{- end -}}

{{/* the model cache claim name */}}
{{- define "kanoa.cacheClaim" -}}
{{- default (printf "%s-model-cache" (include "kanoa.fullname" .)) .Values.modelCache.existingClaim -}}
{{- end -}}

{{/* NetworkPolicy egress rule to the database */}}
{{- define "kanoa.dbEgress" -}}
{{- if .Values.externalDatabase.enabled }}
- to:
    - ipBlock:
        cidr: {{ .Values.externalDatabase.cidr }}
  ports:
    - {protocol: TCP, port: {{ .Values.externalDatabase.port }}}
{{- else if .Values.pgvector.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "kanoa.selector" . | nindent 10 }}
          app.kubernetes.io/component: pgvector
  ports:
    - {protocol: TCP, port: 5432}
{{- end }}
{{- end -}}
