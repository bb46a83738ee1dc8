"""Wrong-answer cases of lab 10: mistakes learners make when they first write Kubernetes manifests."""

from grader.cases import Case, answer, replace

DEPLOYMENT, SERVICE, CONFIG, HPA, PDB, NETWORK, RBAC, BASE, OVERLAYS, KIND, COST = (
    "answer-04", "answer-06", "answer-07", "answer-09", "answer-10", "answer-12", "answer-13", "answer-15",
    "answer-16", "answer-19", "answer-20")
AFTER_BUILD = ("schema_valid", "image_pinned", "probes", "resources", "restricted_security", "config_and_secret",
               "service_routes", "autoscaling", "disruption_budget", "network_policy", "rbac_minimal",
               "overlays_differ_rightly")
POD_SECURITY = """      securityContext:
        runAsNonRoot: true
        runAsUser: 1000
        runAsGroup: 1000
        fsGroup: 1000
        seccompProfile:
          type: RuntimeDefault
"""
CONTAINER_SECURITY = """          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: ["ALL"]
"""
SECRET_ENV = """          env:
            - name: MLFLOW_TRACKING_TOKEN
              valueFrom:
                secretKeyRef:
                  name: cancer-service-secrets
                  key: mlflow-token
"""
STARTUP = """          startupProbe:  # the model loads for up to a minute: liveness waits for it
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 5
            failureThreshold: 24
"""
LIMITS = """            limits:
              cpu: "1"
              memory: 1Gi
"""

CASES = [
    Case("runs_as_root_writable", "left out the security contexts: the container runs as root with a writable root "
         "filesystem and every default capability",
         edits=(replace(DEPLOYMENT, POD_SECURITY, ""), replace(DEPLOYMENT, CONTAINER_SECURITY, "")),
         expect={"restricted_security": "failed"},
         says={"restricted_security": r"allowPrivilegeEscalation.*|runAsNonRoot"},
         fix="Pod: runAsNonRoot, seccompProfile RuntimeDefault; container: no escalation, read-only root, drop ALL."),
    Case("liveness_on_readyz", "pointed the liveness probe at /readyz and dropped the startup probe",
         edits=(replace(DEPLOYMENT, STARTUP, ""),
                replace(DEPLOYMENT, """          livenessProbe:  # restart only a process that no longer answers at all
            httpGet:
              path: /healthz""", """          livenessProbe:
            httpGet:
              path: /readyz""")),
         expect={"probes": "failed"},
         says={"probes": r"livenessProbe asks /readyz on port 3000, not /healthz.*killed and restarted"},
         fix="Liveness asks /healthz (the process answers); readiness asks /readyz (the model is loaded)."),
    Case("requests_only", "set requests but no limits",
         edits=(replace(DEPLOYMENT, LIMITS, ""),),
         expect={"resources": "failed"},
         says={"resources": r"dev: Deployment/cancer-service container service sets no limits\.cpu, limits\.memory"},
         fix="Set limits for CPU and memory at least as large as the requests."),
    Case("selector_by_another_label", "selected the pods by `app: cancer-service` in the Service and the budget, "
         "a label the pods do not carry",
         edits=(replace(SERVICE, "  selector:\n    app.kubernetes.io/name: cancer-service",
                        "  selector:\n    app: cancer-service"),
                replace(PDB, "    matchLabels:\n      app.kubernetes.io/name: cancer-service",
                        "    matchLabels:\n      app: cancer-service")),
         expect={"service_routes": "failed", "disruption_budget": "failed"},
         says={"service_routes": r"selects \{'app': 'cancer-service'\}.*routes to no pod",
               "disruption_budget": r"does not select the Deployment's pods"},
         fix="Select by the labels of the pod template: app.kubernetes.io/name: cancer-service."),
    Case("token_in_configmap", "put the tracking token into the ConfigMap instead of referencing the Secret",
         edits=(replace(DEPLOYMENT, SECRET_ENV, ""),
                replace(CONFIG, '  MLFLOW_DISABLE_TELEMETRY: "true"',
                        '  MLFLOW_DISABLE_TELEMETRY: "true"\n  MLFLOW_TRACKING_TOKEN: "mlf-7Gq2xW9pL4vR8sT1"')),
         expect={"config_and_secret": "failed"},
         says={"config_and_secret": r"references no Secret.*secret-looking values written in plain text: "
               r"MLFLOW_TRACKING_TOKEN"},
         fix="valueFrom: secretKeyRef to a Secret created outside git (kubectl create secret, sealed-secrets)."),
    Case("hpa_v1_wrong_name", "wrote an autoscaling/v1 HPA and misspelt the Deployment's name in it",
         edits=(answer(HPA, """
                %%writefile {output_dir}/k8s/base/hpa.yaml
                apiVersion: autoscaling/v1
                kind: HorizontalPodAutoscaler
                metadata:
                  name: cancer-service
                spec:
                  scaleTargetRef:
                    apiVersion: apps/v1
                    kind: Deployment
                    name: cancer-svc
                  minReplicas: 2
                  maxReplicas: 6
                  targetCPUUtilizationPercentage: 70
                """),),
         expect={"autoscaling": "failed"},
         says={"autoscaling": r"not autoscaling/v2.*scales Deployment/cancer-svc, not the Deployment cancer-service"},
         fix="autoscaling/v2 with a Resource cpu metric; scaleTargetRef names the Deployment."),
    Case("budget_blocks_drains", "required every pod to stay available during disruptions",
         edits=(replace(PDB, "  maxUnavailable: 1", "  minAvailable: 100%"),),
         expect={"disruption_budget": "failed"},
         says={"disruption_budget": r"allows no eviction: a node drain would hang"},
         fix="maxUnavailable: 1 (or minAvailable below the autoscaler's minimum)."),
    Case("open_network_policy", "admitted every pod and left egress open",
         edits=(replace(NETWORK, '  policyTypes: ["Ingress", "Egress"]', '  policyTypes: ["Ingress"]'),
                replace(NETWORK, """    - from:
        - podSelector:
            matchLabels:
              role: gateway
      ports:""", """    - ports:""")),
         expect={"network_policy": "failed"},
         says={"network_policy": r"policyTypes is \[.Ingress.\].*admits every pod"},
         fix="policyTypes: [Ingress, Egress]; from: podSelector role: gateway."),
    Case("cluster_admin_account", "gave the ServiceAccount a ClusterRole that can do everything, and kept its "
         "token mounted",
         edits=(answer(RBAC, """
                %%writefile {output_dir}/k8s/base/rbac.yaml
                apiVersion: v1
                kind: ServiceAccount
                metadata:
                  name: cancer-service
                ---
                apiVersion: rbac.authorization.k8s.io/v1
                kind: ClusterRole
                metadata:
                  name: cancer-service
                rules:
                  - apiGroups: ["*"]
                    resources: ["*"]
                    verbs: ["*"]
                ---
                apiVersion: rbac.authorization.k8s.io/v1
                kind: ClusterRoleBinding
                metadata:
                  name: cancer-service
                roleRef:
                  apiGroup: rbac.authorization.k8s.io
                  kind: ClusterRole
                  name: cancer-service
                subjects:
                  - kind: ServiceAccount
                    name: cancer-service
                    namespace: default
                """), replace(DEPLOYMENT, "      automountServiceAccountToken: false\n", "")),
         expect={"rbac_minimal": "failed"},
         says={"rbac_minimal": r"token is mounted.*ClusterRole/cancer-service"},
         fix="A Role that gets one ConfigMap, a RoleBinding, automountServiceAccountToken: false."),
    Case("typed_in_tag", "typed the notebook's image tag into the overlays instead of using image_tag",
         edits=(replace(OVERLAYS, '    newTag: "{image_tag}"', '    newTag: "3f2a9c4e1b7d6a8f0c5e2d9b4a7f1c3e8d6b2a5f"'),),
         expect={"image_pinned": "failed"},
         says={"image_pinned": r"runs ghcr\.io/mlops-course/cancer-service:3f2a9c4e.*image_tag parameter"},
         fix="newTag: the image_tag parameter (an f-string)."),
    Case("prod_drifts_from_dev", "changed the ConfigMap in prod as well (a setting dev never runs with)",
         edits=(replace(OVERLAYS, 'patches=hpa_bounds(3, 10) + PROD_RESOURCES))',
                        'patches=hpa_bounds(3, 10) + PROD_RESOURCES + """  - target:\n      kind: ConfigMap\n'
                        '    patch: |\n      - op: add\n        path: /data/BENTOML_DEBUG\n        value: "false"\n"""))'),),
         expect={"overlays_differ_rightly": "failed"},
         says={"overlays_differ_rightly": r"ConfigMap/cancer-service-config data\.BENTOML_DEBUG"},
         fix="Prod and dev differ in replicas, resources and autoscaling bounds only: what dev tests is what runs."),
    Case("unknown_field", "misspelt a probe field (initialDelaySecond), which kubectl apply --validate=strict refuses",
         edits=(replace(DEPLOYMENT, "            periodSeconds: 10\n", "            periodSeconds: 10\n"
                        "            initialDelaySecond: 5\n"),),
         expect={"schema_valid": "failed"},
         says={"schema_valid": r"initialDelaySecond"},
         fix="Validate with schema_errors(render(overlay)) before you apply."),
    Case("wrong_base_path", "pointed the dev overlay at ../base, which does not exist",
         edits=(replace(OVERLAYS, 'overlay("cancer-dev", patches=hpa_bounds(1, 2)))',
                        'overlay("cancer-dev", patches=hpa_bounds(1, 2)).replace("../../base", "../base"))'),),
         expect={"overlays_build": "failed", **{name: "skipped" for name in AFTER_BUILD}},
         says={"overlays_build": r"the dev overlay does not build"},
         fix="resources: [../../base] from k8s/overlays/<name>."),
    Case("single_node_kind", "wrote a kind config with only a control-plane node",
         edits=(replace(KIND, "\n  - role: worker", ""),),
         expect={"kind_config": "failed"},
         says={"kind_config": r"\['control-plane'\]"},
         fix="Add a worker node."),
    Case("no_control_plane_fee", "forgot the managed cluster's control-plane fee",
         edits=(replace(COST, '(nodes * cluster["node_hour"] + cluster["control_plane_hour"]) * hours',
                        'nodes * cluster["node_hour"] * hours'),),
         expect={"cost_example": "failed", "cost_model": "skipped"},
         says={"cost_example": r"kubernetes costs 140\.16.*expected 213\.16"},
         fix="(nodes × node_hour + control_plane_hour) × hours."),
    Case("instances_for_the_mean", "sized the always-on instances and nodes for the mean rate instead of the peak",
         edits=(replace(COST, 'math.ceil(profile["peak_rps"] / managed["requests_per_second_per_instance"])',
                        'math.ceil(profile["mean_rps"] / managed["requests_per_second_per_instance"])'),
                replace(COST, 'math.ceil(profile["peak_rps"] / cluster["requests_per_second_per_node"])',
                        'math.ceil(profile["mean_rps"] / cluster["requests_per_second_per_node"])')),
         expect={"cost_model": "partial"},
         says={"cost_model": r"profiles priced or chosen wrong"},
         fix="Capacity that is always on must cover the peak."),
]
