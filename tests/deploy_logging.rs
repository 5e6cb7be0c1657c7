//! The log-shipping examples under `deploy/logging/`: the Vector and Fluent
//! Bit configs parse (python3 + PyYAML) and ship to OpenSearch and Loki from
//! the access-log file and the pods' stdout; the index template maps, and the
//! README documents, exactly the fields of an access-log [`Record`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use socialgate::access_log::Record;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap()
}

const YAML_TO_JSON: &str =
    "import json, sys, yaml\nprint(json.dumps(yaml.safe_load(open(sys.argv[1], encoding='utf-8'))))";

fn yaml(rel: &str) -> Option<Value> {
    let out = Command::new("python3").arg("-c").arg(YAML_TO_JSON).arg(repo(rel)).output();
    let missing = match &out {
        Err(err) => Some(err.to_string()),
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named 'yaml'") => Some("no PyYAML".to_owned()),
        Ok(_) => None,
    };
    if let Some(why) = missing {
        assert!(std::env::var_os("CI").is_none(), "python3 with PyYAML is needed under CI (apt: python3-yaml): {why}");
        eprintln!("note: python3 with PyYAML not available, skipping: {why}");
        return None;
    }
    let out = out.unwrap();
    assert!(out.status.success(), "{rel} is not valid YAML: {}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// The field names of a record, from the SPEC's own example.
fn record_fields() -> BTreeSet<String> {
    let sample = r#"{"ts":"2026-11-26T09:15:02.481Z","client":"10.20.4.17","user":"alice","department":"sales",
 "method":"CONNECT","host":"www.facebook.com","port":443,"url":null,"sni":"www.facebook.com",
 "service":"facebook","rule":"services.facebook","action":"log","status":200,
 "bytes_up":1830,"bytes_down":48211,"duration_ms":5120,"closed_by":"client"}"#;
    let record: Record = serde_json::from_str(sample).unwrap();
    let value = serde_json::to_value(record).unwrap();
    value.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn index_template_maps_every_record_field() {
    let template: Value = serde_json::from_str(&read("deploy/logging/opensearch-index-template.json")).unwrap();
    let props = template["template"]["mappings"]["properties"].as_object().unwrap();
    let mapped: BTreeSet<String> = props.keys().filter(|k| *k != "@timestamp").cloned().collect();
    assert_eq!(mapped, record_fields());
    assert_eq!(props["ts"]["type"], "date");
    assert_eq!(props["client"]["type"], "ip");
    for counter in ["bytes_up", "bytes_down", "duration_ms"] {
        assert_eq!(props[counter]["type"], "long", "{counter}");
    }
    assert_eq!(template["index_patterns"], serde_json::json!(["socialgate-*"]));
}

#[test]
fn readme_documents_every_record_field() {
    let readme = read("deploy/logging/README.md");
    let documented: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |"))
        .map(|(field, _)| field.to_owned())
        .filter(|f| !f.contains('.'))
        .collect();
    assert_eq!(documented, record_fields());
}

#[test]
fn vector_ships_file_and_pod_records_to_opensearch_loki_and_an_archive() {
    let Some(v) = yaml("deploy/logging/vector.yaml") else { return };
    assert_eq!(v["sources"]["socialgate_file"]["type"], "file");
    assert_eq!(v["sources"]["socialgate_file"]["include"][0], "/var/log/socialgate/access.log");
    assert_eq!(v["sources"]["socialgate_pods"]["type"], "kubernetes_logs");
    let remap = &v["transforms"]["socialgate_records"];
    assert_eq!(remap["type"], "remap");
    assert_eq!(remap["inputs"], serde_json::json!(["socialgate_file", "socialgate_pods"]));
    assert!(remap["source"].as_str().unwrap().contains("parse_json!"));
    let sinks = v["sinks"].as_object().unwrap();
    let types: BTreeSet<&str> = sinks.values().map(|s| s["type"].as_str().unwrap()).collect();
    assert_eq!(types, BTreeSet::from(["elasticsearch", "loki", "file"]));
    for sink in sinks.values() {
        assert_eq!(sink["inputs"], serde_json::json!(["socialgate_records"]));
    }
    // The archive is what `socialgate report` reads: gzip JSON Lines.
    assert_eq!(sinks["archive"]["compression"], "gzip");
    assert_eq!(sinks["archive"]["encoding"]["codec"], "json");
    assert!(sinks["archive"]["path"].as_str().unwrap().ends_with(".jsonl.gz"));
}

#[test]
fn fluent_bit_parses_ts_and_ships_to_opensearch_and_loki() {
    let Some(f) = yaml("deploy/logging/fluent-bit.yaml") else { return };
    let parser = &f["parsers"][0];
    assert_eq!(parser["format"], "json");
    assert_eq!(parser["time_key"], "ts");
    let inputs = f["pipeline"]["inputs"].as_array().unwrap();
    assert!(inputs.iter().any(|i| i["path"] == "/var/log/socialgate/access.log" && i["parser"] == parser["name"]));
    assert!(inputs.iter().any(|i| i["path"].as_str().unwrap().starts_with("/var/log/containers/socialgate-")));
    let outputs: BTreeSet<&str> =
        f["pipeline"]["outputs"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(outputs, BTreeSet::from(["opensearch", "loki"]));
}
