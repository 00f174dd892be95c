{{/*
One Radscribe process as a Deployment.  Called with a dict:
  root       the chart's root context ($)
  component  name of the component (web, dicom, hl7, worker, worker-gpu)
  spec       its values block (replicas, resources, probes, nodeSelector, tolerations, affinity)
  args       the `radscribe` sub-command, as a list
  env        extra environment variables of this component, a list of {name, value} (optional)
  ports      container ports, a list of dicts {name, port}
  data       true when the process needs the shared DICOM/data volume
  gpu        true for the CUDA image
  replicas   false to leave replicas to an autoscaler
*/}}
{{- define "radscribe.deployment" -}}
{{- $root := .root -}}
{{- $spec := .spec -}}
{{- $metricsPort := false -}}
{{- range .ports }}{{ if eq .name "metrics" }}{{ $metricsPort = true }}{{ end }}{{ end -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "radscribe.fullname" $root }}-{{ .component }}
  labels:
    {{- include "radscribe.componentLabels" (dict "root" $root "component" .component) | nindent 4 }}
spec:
  {{- if .replicas }}
  replicas: {{ $spec.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "radscribe.componentSelector" (dict "root" $root "component" .component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "radscribe.componentLabels" (dict "root" $root "component" .component) | nindent 8 }}
        {{- if $metricsPort }}
        radscribe.io/metrics-port: "true"
        {{- end }}
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        {{- include "radscribe.podAnnotations" $root | nindent 8 }}
    spec:
      serviceAccountName: {{ include "radscribe.serviceAccountName" $root }}
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: 60
      containers:
        - name: {{ .component }}
          image: {{ include "radscribe.image" (dict "root" $root "gpu" .gpu) | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            {{- toYaml .args | nindent 12 }}
          envFrom:
            - configMapRef:
                name: {{ include "radscribe.fullname" $root }}-config
          env:
            {{- include "radscribe.secretEnv" $root | nindent 12 }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            {{- range .ports }}
            - name: {{ .name }}
              containerPort: {{ .port }}
              protocol: TCP
            {{- end }}
          {{- with $spec.probes.startup }}
          startupProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $spec.probes.liveness }}
          livenessProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $spec.probes.readiness }}
          readinessProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          resources:
            {{- toYaml $spec.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: data
              mountPath: /var/lib/radscribe
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: data
          {{- if .data }}
          persistentVolumeClaim:
            claimName: {{ include "radscribe.dataClaimName" $root }}
          {{- else }}
          emptyDir: {}
          {{- end }}
        - name: tmp
          emptyDir: {}
      {{- with $spec.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $spec.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $spec.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}
