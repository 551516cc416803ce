// validate_k8s.mjs - validate rendered Kubernetes manifests (multi-document
// YAML files given as arguments) against the Kubernetes JSON schemas shipped
// in the npm packages kubernetes-models, @kubernetes-models/keda and
// @kubernetes-models/prometheus-operator, then check the deployment rules
// of kanoa-mlops on every object:
//   - Pod Security "restricted": runAsNonRoot, no privilege escalation,
//     capabilities drop ALL (only NET_BIND_SERVICE may be added), seccomp
//     RuntimeDefault, no hostPath/hostNetwork/hostPID/hostIPC/privileged;
//   - every container has resource requests and limits;
//   - images pinned by tag (never :latest or untagged);
//   - secrets (env names with TOKEN, KEY, PASSWORD, SECRET, or a database
//     URL) only through secretKeyRef;
//   - model servers (vllm) mount the model cache read-only with
//     HF_HUB_OFFLINE=1;
//   - KEDA queries use vllm:num_requests_waiting with the model_name label;
//   - a default-deny NetworkPolicy (Ingress and Egress) exists when any
//     NetworkPolicy does.
// Prints "ok - FILE: ..." / "not ok - FILE: ..." lines and exits 1 on any
// failure. Usage: node validate_k8s.mjs [--no-netpol] FILE...
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

let failures = 0;
const bad = (file, msg) => { failures++; console.log(`not ok - ${file}: ${msg}`); };
const ok = (file, msg) => console.log(`ok - ${file}: ${msg}`);

function modulePath(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "keda.sh") return `@kubernetes-models/keda/keda.sh/${version}/${kind}`;
  if (group === "monitoring.coreos.com")
    return `@kubernetes-models/prometheus-operator/monitoring.coreos.com/${version}/${kind}`;
  return group ? `kubernetes-models/${group}/${version}/${kind}` : `kubernetes-models/${version}/${kind}`;
}

async function schemaCheck(file, obj) {
  let mod;
  try {
    mod = await import(modulePath(obj.apiVersion, obj.kind));
  } catch (e) {
    bad(file, `${obj.kind} ${obj.apiVersion}: no schema (${e.code || e.message})`);
    return;
  }
  try {
    new mod[obj.kind](obj).validate();
  } catch (e) {
    bad(file, `${obj.kind}/${obj.metadata?.name}: ${e.message.split("\n")[0]}`);
  }
}

function podSpecOf(obj) {
  const k = obj.kind;
  if (["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"].includes(k)) return obj.spec?.template?.spec;
  if (k === "Job") return obj.spec?.template?.spec;
  if (k === "CronJob") return obj.spec?.jobTemplate?.spec?.template?.spec;
  if (k === "Pod") return obj.spec;
  return null;
}

const secretName = /(TOKEN|KEY|PASSWORD|SECRET|DATABASE_URL)/;

function checkContainer(file, id, c, pod) {
  const sc = c.securityContext || {};
  const psc = pod.securityContext || {};
  const nonRoot = sc.runAsNonRoot ?? psc.runAsNonRoot;
  if (nonRoot !== true) bad(file, `${id}: runAsNonRoot is not true`);
  if ((sc.runAsUser ?? psc.runAsUser) === 0) bad(file, `${id}: runs as UID 0`);
  if (sc.allowPrivilegeEscalation !== false) bad(file, `${id}: allowPrivilegeEscalation is not false`);
  if (sc.privileged) bad(file, `${id}: privileged`);
  const drop = sc.capabilities?.drop || [];
  if (!drop.includes("ALL")) bad(file, `${id}: capabilities.drop lacks ALL`);
  for (const a of sc.capabilities?.add || [])
    if (a !== "NET_BIND_SERVICE") bad(file, `${id}: adds capability ${a}`);
  const seccomp = sc.seccompProfile?.type ?? psc.seccompProfile?.type;
  if (!["RuntimeDefault", "Localhost"].includes(seccomp)) bad(file, `${id}: seccompProfile is ${seccomp}`);
  if (!c.resources?.requests || !c.resources?.limits) bad(file, `${id}: no resource requests/limits`);
  const img = c.image || "";
  const tag = img.includes("@") ? "digest" : img.split("/").pop().split(":")[1];
  if (!tag || tag === "latest") bad(file, `${id}: image ${img} is not pinned`);
  for (const e of c.env || []) {
    if (!secretName.test(e.name) || e.name.endsWith("_FILE") || e.value === undefined) continue;
    // a database URL may be literal when it carries no password
    if (e.name.endsWith("DATABASE_URL") && !/:\/\/[^/@:]+:[^@/]*@/.test(e.value)) continue;
    bad(file, `${id}: env ${e.name} is a literal, not a secretKeyRef`);
  }
  for (const a of [...(c.args || []), ...(c.command || [])])
    if (/--(api-key|hf-token|password)=/.test(String(a))) bad(file, `${id}: secret on the command line: ${a}`);
}

function checkVllm(file, id, c, pod) {
  const mount = (c.volumeMounts || []).find((m) => m.name === "model-cache");
  const vol = (pod.volumes || []).find((v) => v.name === "model-cache");
  if (!mount || mount.readOnly !== true) bad(file, `${id}: model cache not mounted readOnly`);
  if (!vol?.persistentVolumeClaim?.readOnly) bad(file, `${id}: model cache PVC not readOnly`);
  const off = (c.env || []).find((e) => e.name === "HF_HUB_OFFLINE");
  if (off?.value !== "1") bad(file, `${id}: HF_HUB_OFFLINE is not 1`);
  if (!(c.env || []).some((e) => e.name === "VLLM_API_KEY" && e.valueFrom?.secretKeyRef))
    bad(file, `${id}: VLLM_API_KEY not from a Secret`);
}

function checkPod(file, obj) {
  const pod = podSpecOf(obj);
  if (!pod) return;
  const id0 = `${obj.kind}/${obj.metadata?.name}`;
  for (const f of ["hostNetwork", "hostPID", "hostIPC"]) if (pod[f]) bad(file, `${id0}: ${f}`);
  for (const v of pod.volumes || []) if (v.hostPath) bad(file, `${id0}: hostPath volume ${v.name}`);
  const component = obj.spec?.template?.metadata?.labels?.["app.kubernetes.io/component"];
  for (const c of [...(pod.initContainers || []), ...(pod.containers || [])]) {
    const id = `${id0}/${c.name}`;
    checkContainer(file, id, c, pod);
    if (component === "vllm") checkVllm(file, id, c, pod);
  }
}

function checkKeda(file, obj) {
  if (obj.kind !== "ScaledObject") return;
  for (const t of obj.spec?.triggers || []) {
    const q = t.metadata?.query || "";
    if (!/vllm:num_requests_waiting\{[^}]*model_name="[^"]+"/.test(q))
      bad(file, `ScaledObject/${obj.metadata.name}: query lacks vllm:num_requests_waiting{model_name=...}: ${q}`);
    if (/[{,]model="/.test(q)) bad(file, `ScaledObject/${obj.metadata.name}: query filters on label model`);
    if (t.metadata?.metricName) bad(file, `ScaledObject/${obj.metadata.name}: metricName was removed in KEDA 2.12`);
  }
}

const args = process.argv.slice(2);
const needNetpol = !args.includes("--no-netpol");
for (const file of args.filter((a) => !a.startsWith("--"))) {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  const objs = [];
  for (const d of docs) {
    if (d.errors.length) { bad(file, `YAML: ${d.errors[0].message}`); continue; }
    const o = d.toJS();
    if (o) objs.push(o);
  }
  const before = failures;
  for (const o of objs) {
    if (!o.apiVersion || !o.kind) { bad(file, "document without apiVersion/kind"); continue; }
    await schemaCheck(file, o);
    checkPod(file, o);
    checkKeda(file, o);
  }
  const pols = objs.filter((o) => o.kind === "NetworkPolicy");
  const deny = pols.some((p) => !p.spec.ingress && !p.spec.egress &&
    (p.spec.policyTypes || []).includes("Ingress") && (p.spec.policyTypes || []).includes("Egress"));
  if (needNetpol && !deny) bad(file, "no default-deny NetworkPolicy (Ingress+Egress)");
  if (failures === before) ok(file, `${objs.length} objects valid`);
}
process.exit(failures ? 1 : 0);
