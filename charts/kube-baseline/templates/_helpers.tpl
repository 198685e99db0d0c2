{{/*
Labels of every object: kustomize's `app.kubernetes.io/part-of` (config/default) plus Helm's
own. Pod templates and selectors get neither, so they stay those of config/.
*/}}
{{- define "kube-baseline.labels" -}}
app.kubernetes.io/part-of: kube-baseline
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "kube-baseline.controllerLabels" -}}
app.kubernetes.io/name: kube-baseline
app.kubernetes.io/component: controller
{{- end -}}

{{- define "kube-baseline.agentLabels" -}}
app.kubernetes.io/name: kube-baseline
app.kubernetes.io/component: agent
{{- end -}}

{{/* The image reference: repository@digest, or repository:tag (tag defaults to appVersion). */}}
{{- define "kube-baseline.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* image, imagePullPolicy of a container (indent with nindent). */}}
{{- define "kube-baseline.containerImage" -}}
image: {{ include "kube-baseline.image" . }}
{{- with .Values.image.pullPolicy }}
imagePullPolicy: {{ . }}
{{- end }}
{{- end -}}

{{- define "kube-baseline.pullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
- name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "kube-baseline.agentNamespace" -}}
{{ .Values.agent.namespace }}
{{- end -}}
