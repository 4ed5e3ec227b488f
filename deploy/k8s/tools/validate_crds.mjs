// Validates the custom resources of a rendered deploy/k8s build (JSON array on stdin) against the
// validators that @kubernetes-models generates from the Prometheus Operator's and KEDA's Go API types:
// types, required fields, enums and patterns. Those validators do not reject unknown fields, so
// tests/deploy/test_k8s.py adds a check of its own for the fields these manifests use.
// Prints one line per object ("ok <kind>/<name>" or "invalid <kind>/<name>: <errors>") and exits 1
// when any object is invalid or of a kind it has no validator for (so a new CRD cannot slip through
// unvalidated). Core Kubernetes kinds are not its business: the test validates them in Python.
import { PrometheusRule, ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import { ScaledObject, TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1";
import { readFileSync } from "node:fs";

const models = {
  "monitoring.coreos.com/v1/PrometheusRule": PrometheusRule,
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
  "keda.sh/v1alpha1/TriggerAuthentication": TriggerAuthentication,
};

let failed = false;
for (const object of JSON.parse(readFileSync(0, "utf8"))) {
  const name = `${object.kind}/${object.metadata?.name}`;
  const Model = models[`${object.apiVersion}/${object.kind}`];
  if (!Model) {
    console.log(`invalid ${name}: no validator for ${object.apiVersion} ${object.kind}`);
    failed = true;
    continue;
  }
  try {
    new Model(object).validate();
    console.log(`ok ${name}`);
  } catch (error) {
    console.log(`invalid ${name}: ${error.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
