{{/* The labels every object of the release carries. */}}
{{- define "kuma.labels" -}}
app.kubernetes.io/name: kuma
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* An image of the release: registry/repository:tag. */}}
{{- define "kuma.image" -}}
{{- $tag := .root.Values.global.image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s/%s:%s" .root.Values.global.image.registry .repository $tag -}}
{{- end }}

{{/* The Service the webhook is reached at. */}}
{{- define "kuma.webhookService" -}}
{{- if .Values.injector.separate -}}kuma-injector{{- else -}}kuma-control-plane{{- end -}}
{{- end }}

{{/* What the injector needs, wherever it runs. */}}
{{- define "kuma.injectorEnv" -}}
- name: KUMA_INJECTOR_WEBHOOK_SERVER_CERT_DIR
  value: /var/run/secrets/kuma.io/webhook
- name: KUMA_INJECTOR_CONTROL_PLANE_BOOTSTRAP_SERVER_URL
  value: {{ printf "https://kuma-control-plane.%s.svc:5682" .Release.Namespace | quote }}
- name: KUMA_INJECTOR_CONTROL_PLANE_CA_CERT_FILE
  value: /var/run/secrets/kuma.io/control-plane-ca/ca.crt
- name: KUMA_INJECTOR_SIDECAR_CONTAINER_IMAGE
  value: {{ include "kuma.image" (dict "root" . "repository" .Values.dataPlane.image.repository) | quote }}
- name: KUMA_INJECTOR_INIT_CONTAINER_IMAGE
  value: {{ include "kuma.image" (dict "root" . "repository" .Values.dataPlane.initImage.repository) | quote }}
- name: KUMA_INJECTOR_NATIVE_SIDECARS
  value: {{ .Values.injector.nativeSidecars | quote }}
{{- end }}

{{- /* The Secret with the control plane's certificate (tls.crt, tls.key)
       and its CA (ca.crt): the user's, or the one this chart generates. */ -}}
{{- define "kuma.tlsSecret" -}}
{{- .Values.controlPlane.tls.general.secretName | default "kuma-tls-cert" -}}
{{- end }}
