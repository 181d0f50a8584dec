{{- define "fto.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fto.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "fto.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "fto.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fto.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fto.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fto.labels" -}}
{{ include "fto.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "fto.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fto.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fto.defaultEnvironmentRef" -}}
{{- if .Values.operator.defaultEnvironment -}}
{{- .Values.operator.defaultEnvironment -}}
{{- else -}}
{{- printf "ClusterFronteggEnvironment/%s" .Values.defaultEnvironment.name -}}
{{- end -}}
{{- end -}}

{{- define "fto.credentialsSecretName" -}}
{{- default (printf "%s-credentials" (include "fto.fullname" .)) .Values.defaultEnvironment.existingSecret -}}
{{- end -}}

{{/* Rules for everything the operator does inside a watched namespace. */}}
{{- define "fto.namespacedRules" -}}
- apiGroups: [tokens.frontegg-operator.io]
  resources: [userapitokens, useraccesstokens, tenantapitokens, tenantaccesstokens]
  verbs: [get, list, watch, patch, update]
- apiGroups: [tokens.frontegg-operator.io]
  resources: [userapitokens/status, useraccesstokens/status, tenantapitokens/status, tenantaccesstokens/status, fronteggenvironments/status]
  verbs: [get, patch, update]
- apiGroups: [tokens.frontegg-operator.io]
  # Owner references with blockOwnerDeletion need update on the owner's finalizers.
  resources: [userapitokens/finalizers, useraccesstokens/finalizers, tenantapitokens/finalizers, tenantaccesstokens/finalizers]
  verbs: [update]
- apiGroups: [tokens.frontegg-operator.io]
  # patch: the in-use finalizer, while tokens issued through the environment exist.
  resources: [fronteggenvironments]
  verbs: [get, list, watch, patch]
- apiGroups: [""]
  # list/watch are needed for the owned-Secret watch; the operator always narrows it with its
  # managed-by label and asks for metadata only (RBAC cannot express a label selector).
  resources: [secrets]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [apps]
  # spec.rotation.restartTargets: a rollout restart (a pod template annotation) when a
  # credential is replaced. Only patch; the operator never reads or lists workloads.
  resources: [deployments, statefulsets, daemonsets]
  verbs: [patch]
{{- end -}}

{{/* The default ClusterFronteggEnvironment the operator applies from the values. */}}
{{- define "fto.defaultEnvironmentManifest" -}}
{{- $env := .Values.defaultEnvironment -}}
apiVersion: tokens.frontegg-operator.io/v1alpha1
kind: ClusterFronteggEnvironment
metadata:
  name: {{ $env.name }}
  labels: {{- include "fto.labels" . | nindent 4 }}
spec:
  {{- if $env.baseUrl }}
  baseUrl: {{ $env.baseUrl | quote }}
  {{- else }}
  region: {{ $env.region }}
  {{- end }}
  credentialsSecretRef:
    name: {{ include "fto.credentialsSecretName" . }}
  {{- with $env.environmentId }}
  environmentId: {{ . | quote }}
  {{- end }}
  rateLimit: {{- toYaml $env.rateLimit | nindent 4 }}
  allowedNamespaces:
    {{- with $env.allowedNamespaces.names }}
    names: {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $env.allowedNamespaces.selector }}
    selector: {{- toYaml . | nindent 6 }}
    {{- end }}
  allowedTenants: {{- toYaml $env.allowedTenants | nindent 4 }}
{{- end -}}
