//! The kubelet's effective configuration, differentially: for every fixture set under
//! tests/fixtures/nodes/kubelet-diff/<case>/ (`flags.txt`: a kubelet command line, one argument
//! per line, with paths relative to the case directory; `config.yaml`, `conf.d/...`), the
//! kubelet's own loading code (e2e/controlplane/kubeletconfig, built and cached by
//! e2e/kubeletconfig-build) and the node agent's observation of the same files must agree:
//!
//! - where the kubelet would refuse to start, the agent's observation is an Error (which every
//!   check reports as Unknown, never as a pass);
//! - otherwise the agent observes the settings its checks read, with the kubelet's values;
//! - a few more fields of kube-baseline's merged configuration (lists, nested maps) equal the
//!   kubelet's.
//!
//! Differences that are known and documented (docs/checks-nodes.md, "Where kube-baseline and
//! the kubelet differ") are listed in [`EXCEPTIONS`]; the test fails if one of them stops
//! differing, so the list cannot go stale. No cluster is needed.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kube_baseline::agent::discover::{KubeletTarget, Targets, read_sources};
use kube_baseline::agent::host::Host;
use kube_baseline::agent::observe::{Found, observe};
use kube_baseline::api::{
    KubeletAuthorizationMode, KubeletObservation, KubeletSettings, KubeletValues, ObservationState,
};
use kube_baseline::domain::node::flags::ProcessFlags;
use kube_baseline::domain::node::kubelet;
use kube_baseline_e2e::repo_root;
use serde_json::Value;

/// Documented differences (docs/checks-nodes.md): case -> why.
const EXCEPTIONS: &[(&str, &str)] = &[(
    "39-locked-feature-gate-refused",
    "feature gates are not modelled: the kubelet refuses a gate locked to its default",
)];

/// Added to every kubelet command line: the host's cgroup version is not part of the files
/// under test, and on a cgroup v1 machine (CI containers) the kubelet's default
/// failCgroupV1=true refuses to start whatever the files say.
const HOST_INDEPENDENT: &str = "--fail-cgroupv1=false";

/// Fields of the merged configuration compared besides the checked settings.
const EXTRA_PATHS: &[&[&str]] = &[
    &["clusterDNS"],
    &["tlsCipherSuites"],
    &["authentication", "x509", "clientCAFile"],
];

fn loader() -> PathBuf {
    let script = repo_root().join("e2e/kubeletconfig-build");
    let out = Command::new(&script)
        .arg("--path")
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
    assert!(
        out.status.success(),
        "{} failed (it needs Go, see e2e/CLUSTER.md); the differential kubelet test cannot run \
         without the kubelet's own config loader:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn cases() -> Vec<PathBuf> {
    let root = repo_root().join("tests/fixtures/nodes/kubelet-diff");
    let mut cases: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|err| panic!("{}: {err}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases
}

fn args_of(case: &Path) -> Vec<String> {
    fs::read_to_string(case.join("flags.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What the kubelet makes of a case: its effective configuration, or its refusal.
fn kubelet_says(loader: &Path, case: &Path, args: &[String]) -> Result<Value, String> {
    let out = Command::new(loader)
        .arg(HOST_INDEPENDENT)
        .args(args)
        .current_dir(case)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(stderr.lines().last().unwrap_or_default().to_owned())
    }
}

/// The agent's observation, through its own path: the kubelet's command line, the files it
/// names read from a host whose `/` is the case directory, then `observe`.
fn agent_says(case: &Path, args: &[String]) -> KubeletObservation {
    let flags = ProcessFlags::parse(args);
    let target = KubeletTarget {
        args: args.to_vec(),
        config: flags.get("config").map(str::to_owned),
        config_dir: flags.get("config-dir").map(str::to_owned),
        ..KubeletTarget::default()
    };
    let targets = Targets {
        kubelet: Found::Found(target),
        ..Targets::default()
    };
    let sources = read_sources(&Host::new(case), "node", &targets);
    observe(&sources).kubelet
}

/// kube-baseline's merged configuration (for the extra fields), from the same files.
fn merged_config(case: &Path, args: &[String]) -> Option<Value> {
    let flags = ProcessFlags::parse(args);
    let host = Host::new(case);
    let config = flags.get("config").map(|p| host.read_text(p).unwrap());
    let drop_ins = match flags.get("config-dir") {
        None => Vec::new(),
        Some(dir) => host
            .list_drop_ins(dir)
            .unwrap()
            .into_iter()
            .map(|(rel, path)| (rel, host.read_text(&path).unwrap()))
            .collect(),
    };
    kubelet::effective_config(config.as_deref(), &drop_ins, &flags)
        .ok()
        .map(|e| e.config)
}

/// The checked settings in effect in the kubelet, read here independently of kube-baseline's
/// settings_of: Go omits false, 0 and "" (omitempty), so absent is zero. `output` is the
/// loader's {"kubeletConfiguration", "seccompDefault"}.
fn settings_from_kubelet(output: &Value) -> KubeletSettings {
    let config = &output["kubeletConfiguration"];
    let get = |path: &[&str]| path.iter().try_fold(config, |v, k| v.get(*k));
    let flag = |path: &[&str]| Some(get(path).and_then(Value::as_bool).unwrap_or(false));
    KubeletSettings {
        anonymous_auth: flag(&["authentication", "anonymous", "enabled"]),
        webhook_authentication: flag(&["authentication", "webhook", "enabled"]),
        // A mode other than these passes the kubelet's validation but fails its start
        // (BuildAuthz): no value, as kube-baseline reports it (Unknown).
        authorization_mode: match get(&["authorization", "mode"]).and_then(Value::as_str) {
            Some("Webhook") => Some(KubeletAuthorizationMode::Webhook),
            Some("AlwaysAllow") => Some(KubeletAuthorizationMode::AlwaysAllow),
            _ => None,
        },
        read_only_port: Some(
            get(&["readOnlyPort"])
                .and_then(Value::as_i64)
                .map_or(0, |p| i32::try_from(p).unwrap()),
        ),
        protect_kernel_defaults: flag(&["protectKernelDefaults"]),
        rotate_certificates: flag(&["rotateCertificates"]),
        // --seccomp-default is ORed with the configuration's (see the loader's Output).
        seccomp_default: Some(output["seccompDefault"].as_bool().unwrap()),
        make_iptables_util_chains: flag(&["makeIPTablesUtilChains"]),
        ..KubeletSettings::default()
    }
}

/// The values of the requirement checks in effect in the kubelet, read from the loader's
/// output (omitempty: absent is zero; `hostnameOverride` and the feature gate are printed
/// by the loader from the kubelet's flags and feature gates).
fn values_from_kubelet(output: &Value) -> KubeletValues {
    let config = &output["kubeletConfiguration"];
    let get = |path: &[&str]| path.iter().try_fold(config, |v, k| v.get(*k));
    let text = |path: &[&str]| {
        get(path)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    KubeletValues {
        client_ca_file: text(&["authentication", "x509", "clientCAFile"]),
        streaming_connection_idle_timeout: text(&["streamingConnectionIdleTimeout"]),
        hostname_override: output["hostnameOverride"].as_str().unwrap().to_owned(),
        tls_cert_file: text(&["tlsCertFile"]),
        tls_private_key_file: text(&["tlsPrivateKeyFile"]),
        server_tls_bootstrap: get(&["serverTLSBootstrap"])
            .and_then(Value::as_bool)
            .unwrap_or(false),
        rotate_kubelet_server_certificate: output["rotateKubeletServerCertificate"]
            .as_bool()
            .unwrap(),
        tls_cipher_suites: get(&["tlsCipherSuites"])
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|i| i.as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default(),
        pod_pids_limit: get(&["podPidsLimit"]).and_then(Value::as_i64).unwrap_or(0),
        static_pod_path: text(&["staticPodPath"]),
    }
}

/// Go's omitempty: false, 0, "", [] and {} are absent.
fn normalized(value: Option<&Value>) -> Value {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Value::Null,
        Some(Value::String(s)) if s.is_empty() => Value::Null,
        Some(Value::Array(a)) if a.is_empty() => Value::Null,
        Some(Value::Object(o)) if o.is_empty() => Value::Null,
        Some(other) => other.clone(),
    }
}

/// The differences of one case, empty when kube-baseline agrees with the kubelet.
fn differences(loader: &Path, case: &Path) -> Vec<String> {
    let args = args_of(case);
    let kubelet = kubelet_says(loader, case, &args);
    let agent = agent_says(case, &args);
    let mut diffs = Vec::new();
    match (&kubelet, agent.header.state) {
        (Err(refusal), ObservationState::Observed) => diffs.push(format!(
            "the kubelet refuses to start ({refusal}), the agent observed {:?}",
            agent.settings
        )),
        (Err(_), _) => {}
        (Ok(_), state @ (ObservationState::Error | ObservationState::NotFound)) => {
            diffs.push(format!(
                "the kubelet starts, the agent says {state:?}: {}",
                agent.header.message
            ));
        }
        (Ok(output), ObservationState::Observed) => {
            let want = settings_from_kubelet(output);
            let config = &output["kubeletConfiguration"];
            if agent.settings != want {
                diffs.push(format!(
                    "settings: kubelet {want:?}, agent {:?}",
                    agent.settings
                ));
            }
            let want_values = values_from_kubelet(output);
            if agent.values.as_ref() != Some(&want_values) {
                diffs.push(format!(
                    "values: kubelet {want_values:?}, agent {:?}",
                    agent.values
                ));
            }
            let ours = merged_config(case, &args).unwrap_or(Value::Null);
            for path in EXTRA_PATHS {
                let get = |v: &Value| path.iter().try_fold(v, |v, k| v.get(*k)).cloned();
                let (theirs, ours) = (
                    normalized(get(config).as_ref()),
                    normalized(get(&ours).as_ref()),
                );
                if theirs != ours {
                    diffs.push(format!(
                        "{}: kubelet {theirs}, kube-baseline {ours}",
                        path.join(".")
                    ));
                }
            }
        }
    }
    diffs
}

#[test]
fn the_agent_computes_the_kubelets_effective_configuration() {
    let loader = loader();
    let cases = cases();
    assert!(
        cases.len() >= 25,
        "only {} fixture sets: the differential test needs at least 25",
        cases.len()
    );
    let mut failures = Vec::new();
    let mut refused = 0;
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        if kubelet_says(&loader, case, &args_of(case)).is_err() {
            refused += 1;
        }
        let diffs = differences(&loader, case);
        let exception = EXCEPTIONS.iter().find(|(n, _)| *n == name);
        match (exception, diffs.is_empty()) {
            (None, true) => {}
            (None, false) => failures.push(format!("{name}:\n    {}", diffs.join("\n    "))),
            (Some((_, why)), true) => failures.push(format!(
                "{name}: listed as a documented exception ({why}) but kube-baseline now agrees \
                 with the kubelet: remove it from EXCEPTIONS and docs/checks-nodes.md"
            )),
            (Some(_), false) => {}
        }
    }
    println!(
        "{} fixture sets compared with the kubelet's own loader ({refused} refused by the kubelet, {} documented exceptions)",
        cases.len(),
        EXCEPTIONS.len()
    );
    assert!(
        failures.is_empty(),
        "kube-baseline and the kubelet disagree on {} fixture set(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The fixtures exercise both outcomes.
    assert!(
        refused >= 5,
        "only {refused} fixture sets the kubelet refuses"
    );
    assert!(cases.len() - refused >= 15);
}
