//! The Kubernetes manifests under `deploy/kubernetes/`: every YAML document
//! parses (with python3's PyYAML, converted to JSON; no YAML crate in the
//! build), the required kinds and fields are there (replicas, probes on the
//! admin port's /healthz, resources, a non-root read-only securityContext,
//! labels that match selectors), `kustomization.yaml` names every resource,
//! and the config the ConfigMaps hold, laid out as the Deployment mounts it,
//! passes `socialgate check`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const DIR: &str = "deploy/kubernetes";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

const YAML_TO_JSON: &str = "import json, sys, yaml\n\
print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1], encoding='utf-8')) if d is not None]))";

/// Every document of a YAML file as JSON, or None when python3 with PyYAML
/// is missing (a failure under CI, a skip with a note elsewhere).
fn yaml_documents(path: &Path) -> Option<Vec<Value>> {
    let out = match Command::new("python3").arg("-c").arg(YAML_TO_JSON).arg(path).output() {
        Ok(out) => out,
        Err(err) => return missing_yaml(&err.to_string()),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'yaml'") {
        return missing_yaml(&stderr);
    }
    assert!(out.status.success(), "{} is not valid YAML:\n{stderr}", path.display());
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn missing_yaml(why: &str) -> Option<Vec<Value>> {
    assert!(std::env::var_os("CI").is_none(), "python3 with PyYAML is needed under CI (apt: python3-yaml): {why}");
    eprintln!("note: python3 with PyYAML not available, skipping YAML checks: {why}");
    None
}

fn yaml_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo(DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

/// Every Kubernetes object in the folder (not the kustomization), by file.
fn objects() -> Option<Vec<(String, Value)>> {
    let mut out = Vec::new();
    for path in yaml_files() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "kustomization.yaml" {
            continue;
        }
        for doc in yaml_documents(&path)? {
            out.push((name.clone(), doc));
        }
    }
    Some(out)
}

fn find<'a>(objects: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .map(|(_, o)| o)
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name}"))
}

/// `selector` ⊆ `labels`, both JSON objects of strings.
fn selects(selector: &Value, labels: &Value) -> bool {
    let sel = selector.as_object().expect("selector map");
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn every_document_is_a_named_kubernetes_object() {
    let Some(objects) = objects() else { return };
    let kinds: BTreeSet<&str> = objects.iter().map(|(_, o)| o["kind"].as_str().unwrap()).collect();
    for kind in [
        "Namespace",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
    ] {
        assert!(kinds.contains(kind), "no {kind} in {DIR}");
    }
    for (file, o) in &objects {
        assert!(o["apiVersion"].is_string(), "{file}: apiVersion");
        assert!(o["metadata"]["name"].is_string(), "{file}: metadata.name");
        assert_eq!(o["metadata"]["labels"]["app.kubernetes.io/name"], "socialgate", "{file}: name label");
    }
}

#[test]
fn kustomization_names_every_resource_but_the_operator_one() {
    let Some(docs) = yaml_documents(&repo(&format!("{DIR}/kustomization.yaml"))) else { return };
    let listed: BTreeSet<String> =
        docs[0]["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect();
    let present: BTreeSet<String> = yaml_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| n != "kustomization.yaml" && n != "servicemonitor.yaml")
        .collect();
    assert_eq!(listed, present);
    assert_eq!(docs[0]["namespace"], "socialgate");

    // Render it when kubectl is around (`kubectl kustomize` works offline).
    let Ok(out) = Command::new("kubectl").args(["kustomize", DIR]).current_dir(env!("CARGO_MANIFEST_DIR")).output()
    else {
        eprintln!("note: kubectl not installed, not rendering the kustomization");
        return;
    };
    assert!(out.status.success(), "kubectl kustomize: {}", String::from_utf8_lossy(&out.stderr));
    let rendered = String::from_utf8(out.stdout).unwrap();
    for kind in ["Namespace", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"] {
        assert!(rendered.contains(&format!("\nkind: {kind}\n")), "rendered output lacks {kind}");
    }
    assert!(rendered.contains("image: registry.example.com/socialgate:0.1.0"));
}

#[test]
fn deployment_is_replicated_probed_limited_and_locked_down() {
    let Some(objects) = objects() else { return };
    let d = find(&objects, "Deployment", "socialgate");
    let spec = &d["spec"];
    assert!(spec["replicas"].as_u64().unwrap() >= 2, "at least two replicas");
    let labels = &spec["template"]["metadata"]["labels"];
    assert!(selects(&spec["selector"]["matchLabels"], labels), "selector matches the pod labels");

    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let annotations = &spec["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9090");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let ports: Vec<(&str, u64)> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["containerPort"].as_u64().unwrap()))
        .collect();
    assert!(ports.contains(&("proxy", 3128)) && ports.contains(&("admin", 9090)), "{ports:?}");
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "admin", "{probe}");
    }
    for kind in ["requests", "limits"] {
        assert!(c["resources"][kind]["memory"].is_string(), "resources.{kind}.memory");
    }
    assert!(c["resources"]["requests"]["cpu"].is_string());
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    // `command` replaces the image's ENTRYPOINT (which has `--config`
    // already): `args` alone would pass `--config` twice.
    assert_eq!(c["command"], serde_json::json!(["/usr/local/bin/socialgate"]));
    let dockerfile = std::fs::read_to_string(repo("deploy/container/Dockerfile")).unwrap();
    assert!(dockerfile.contains("COPY --from=build /usr/local/bin/socialgate /usr/local/bin/socialgate"));
    assert_eq!(c["args"], serde_json::json!(["--config", "/etc/socialgate/socialgate.toml", "run"]));
    let mount = &c["volumeMounts"][0];
    assert_eq!(mount["mountPath"], "/etc/socialgate");
    assert_eq!(mount["readOnly"], true);

    // preStop + shutdown_grace (30s) fit in the termination grace period.
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().unwrap();
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(grace > pre_stop + 30, "terminationGracePeriodSeconds {grace} <= preStop {pre_stop} + 30s");
}

#[test]
fn services_pdb_hpa_and_servicemonitor_point_at_the_pods() {
    let Some(objects) = objects() else { return };
    let d = find(&objects, "Deployment", "socialgate");
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    let port_names: Vec<&str> = d["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();

    let proxy = find(&objects, "Service", "socialgate");
    assert!(selects(&proxy["spec"]["selector"], labels));
    // Departments are found by source address: keep it.
    assert_eq!(proxy["spec"]["externalTrafficPolicy"], "Local");
    let admin = find(&objects, "Service", "socialgate-admin");
    assert!(selects(&admin["spec"]["selector"], labels));
    for svc in [proxy, admin] {
        for port in svc["spec"]["ports"].as_array().unwrap() {
            let target = port["targetPort"].as_str().unwrap();
            assert!(port_names.contains(&target), "targetPort {target} is not a container port");
        }
    }

    let pdb = find(&objects, "PodDisruptionBudget", "socialgate");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], labels));
    assert!(pdb["spec"]["minAvailable"].as_u64().unwrap() < d["spec"]["replicas"].as_u64().unwrap());

    let hpa = find(&objects, "HorizontalPodAutoscaler", "socialgate");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "socialgate");
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
    assert!(hpa["spec"]["maxReplicas"].as_u64().unwrap() > hpa["spec"]["minReplicas"].as_u64().unwrap());

    let sm = find(&objects, "ServiceMonitor", "socialgate");
    assert!(selects(&sm["spec"]["selector"]["matchLabels"], &admin["metadata"]["labels"]));
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "admin");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
}

/// Writes the config the pods see: the projected volume's sources, each
/// ConfigMap key at its path (all keys at the top unless `items` maps them).
fn mounted_config(objects: &[(String, Value)], root: &Path) {
    let d = find(objects, "Deployment", "socialgate");
    let volumes = d["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    let config = volumes.iter().find(|v| v["name"] == "config").expect("volume `config`");
    for source in config["projected"]["sources"].as_array().unwrap() {
        let Some(cm) = source.get("configMap") else {
            assert_eq!(source["secret"]["optional"], true, "only optional Secrets besides ConfigMaps");
            continue;
        };
        let map = find(objects, "ConfigMap", cm["name"].as_str().unwrap());
        let data = map["data"].as_object().unwrap();
        match cm.get("items") {
            None => {
                for (key, text) in data {
                    std::fs::write(root.join(key), text.as_str().unwrap()).unwrap();
                }
            }
            Some(items) => {
                let mapped: BTreeSet<&str> =
                    items.as_array().unwrap().iter().map(|i| i["key"].as_str().unwrap()).collect();
                let keys: BTreeSet<&str> = data.keys().map(String::as_str).collect();
                assert_eq!(mapped, keys, "every key of {} is mounted, and only those", cm["name"]);
                for item in items.as_array().unwrap() {
                    let path = root.join(item["path"].as_str().unwrap());
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(path, data[item["key"].as_str().unwrap()].as_str().unwrap()).unwrap();
                }
            }
        }
    }
}

#[test]
fn configmaps_hold_a_config_that_passes_check() {
    let Some(objects) = objects() else { return };
    let main_cm = find(&objects, "ConfigMap", "socialgate-config");
    assert!(main_cm["data"]["socialgate.toml"].is_string(), "ConfigMap key socialgate.toml");
    let dir = tempfile::tempdir().unwrap();
    mounted_config(&objects, dir.path());
    let main = dir.path().join("socialgate.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_socialgate"))
        .env("RUST_LOG", "off")
        .arg("--config")
        .arg(&main)
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "socialgate check on the ConfigMaps");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));

    // What the pods need from it: stdout logging, the admin port the probes use.
    let table: toml::Table = std::fs::read_to_string(&main).unwrap().parse().unwrap();
    assert_eq!(table["log"]["access_log"].as_str(), Some("-"));
    assert_eq!(table["admin"]["listen"].as_str(), Some("0.0.0.0:9090"));
    assert_eq!(table["proxy"]["listen"].as_array().unwrap()[0].as_str(), Some("0.0.0.0:3128"));
    assert!(dir.path().join("departments/default.toml").is_file());
}
