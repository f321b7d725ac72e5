{{/*
The Deployment and Service every Ensayo server gets. A service's own template file
(assignment.yaml, ...) calls these with
  (dict "root" $ "name" SERVICE "database" BOOL)
where "database" says whether the server reads ENSAYO_DATABASE_URL.
*/}}

{{- define "ensayo.deployment" -}}
{{- $root := .root }}
{{- $values := index $root.Values .name }}
{{- $grpcPort := include "ensayo.grpcPort" .name }}
{{- $metricsPort := include "ensayo.metricsPort" .name }}
{{- $envPrefix := printf "ENSAYO_%s" (upper .name) }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "ensayo.componentName" . }}
  labels:
    {{- include "ensayo.componentLabels" . | nindent 4 }}
spec:
  {{- /* With an HPA the autoscaler owns the count; a fixed one would fight it on every upgrade. */}}
  {{- if not $values.hpa.enabled }}
  replicas: {{ $values.replicas }}
  {{- end }}
  revisionHistoryLimit: {{ $root.Values.revisionHistoryLimit }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      # Bring a new pod up before an old one goes, so capacity never dips during a rollout.
      maxSurge: 1
      maxUnavailable: 0
  selector:
    matchLabels:
      {{- include "ensayo.componentSelectorLabels" . | nindent 6 }}
  template:
    metadata:
      annotations:
        checksum/config: {{ include "ensayo.configChecksum" $root }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      labels:
        {{- include "ensayo.componentLabels" . | nindent 8 }}
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- with $root.Values.image.pullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      serviceAccountName: {{ include "ensayo.serviceAccountName" $root }}
      # The servers never call the Kubernetes API.
      automountServiceAccountToken: false
      # Above preStop sleep + config.shutdownGraceSeconds: SIGTERM -> NOT_SERVING -> drain -> exit.
      terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
      securityContext:
        {{- toYaml $root.Values.securityContext.pod | nindent 8 }}
      containers:
        - name: {{ .name }}
          image: {{ include "ensayo.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          # The image's entrypoint is `ensayo serve`; the argument picks the service.
          args: [{{ .name | quote }}]
          ports:
            - name: grpc
              containerPort: {{ $grpcPort }}
              protocol: TCP
            - name: metrics
              containerPort: {{ $metricsPort }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "ensayo.fullname" $root }}
          env:
            - name: {{ $envPrefix }}_ADDR
              value: "0.0.0.0:{{ $grpcPort }}"
            - name: {{ $envPrefix }}_METRICS_ADDR
              value: "0.0.0.0:{{ $metricsPort }}"
            - name: ENSAYO_API_KEYS_FILE
              value: {{ printf "%s/api-keys.yaml" (include "ensayo.apiKeysDir" $root) | quote }}
            - name: ENSAYO_REDIS_URL
              valueFrom:
                secretKeyRef:
                  name: {{ include "ensayo.redisSecretName" $root }}
                  key: {{ include "ensayo.redisSecretKey" $root }}
            {{- if .database }}
            - name: ENSAYO_DATABASE_URL
              valueFrom:
                secretKeyRef:
                  name: {{ include "ensayo.databaseSecretName" $root }}
                  key: {{ include "ensayo.databaseSecretKey" $root }}
            {{- end }}
            {{- range $key, $value := $values.env }}
            - name: {{ $key }}
              value: {{ $value | toString | quote }}
            {{- end }}
          # Native gRPC probes ask grpc.health.v1.Health for the server as a whole (service unset).
          startupProbe:
            grpc:
              port: {{ $grpcPort }}
            {{- toYaml $root.Values.probes.startup | nindent 12 }}
          livenessProbe:
            grpc:
              port: {{ $grpcPort }}
            {{- toYaml $root.Values.probes.liveness | nindent 12 }}
          readinessProbe:
            grpc:
              port: {{ $grpcPort }}
            {{- toYaml $root.Values.probes.readiness | nindent 12 }}
          {{- with $root.Values.preStopSleepSeconds }}
          # Keep serving while endpoints and clients drop this pod; SIGTERM follows the sleep.
          lifecycle:
            preStop:
              exec:
                command: ["sleep", {{ . | quote }}]
          {{- end }}
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext.container | nindent 12 }}
          volumeMounts:
            # The root filesystem is read-only; /tmp is the only writable path.
            - name: tmp
              mountPath: /tmp
            - name: api-keys
              mountPath: {{ include "ensayo.apiKeysDir" $root }}
              readOnly: true
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ $root.Values.tmpSizeLimit }}
        - name: api-keys
          secret:
            secretName: {{ include "ensayo.apiKeysSecretName" $root }}
            defaultMode: 0440
            items:
              - key: {{ include "ensayo.apiKeysSecretKey" $root }}
                path: api-keys.yaml
      {{- with $root.Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if $root.Values.topologySpread.enabled }}
      # Spread each service's replicas over nodes and zones when the cluster allows it.
      topologySpreadConstraints:
        {{- range $key := list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
        - maxSkew: 1
          topologyKey: {{ $key }}
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "ensayo.componentSelectorLabels" $ | nindent 14 }}
        {{- end }}
      {{- end }}
{{- end }}

{{- define "ensayo.service" -}}
{{- $root := .root }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "ensayo.componentName" . }}
  labels:
    {{- include "ensayo.componentLabels" . | nindent 4 }}
  {{- with $root.Values.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: ClusterIP
  {{- if $root.Values.service.headless }}
  # Headless: clients resolve every pod and balance gRPC calls themselves (round_robin).
  clusterIP: None
  {{- end }}
  selector:
    {{- include "ensayo.componentSelectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ include "ensayo.grpcPort" .name }}
      targetPort: grpc
      protocol: TCP
      appProtocol: kubernetes.io/h2c
    - name: metrics
      port: {{ include "ensayo.metricsPort" .name }}
      targetPort: metrics
      protocol: TCP
      appProtocol: http
{{- end }}
