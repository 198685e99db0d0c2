//! A process's command-line flags, parsed as pflag parses them (the kubelet, the
//! kube-apiserver), and Go's boolean syntax.

use crate::domain::node::config_files::ControlPlaneError;

/// Flags that pflag parses as string slices: every occurrence appends, so repeated flags
/// are joined rather than the last one winning.
const LIST_FLAGS: &[&str] = &[
    "authorization-mode",
    "disable-admission-plugins",
    "enable-admission-plugins",
    "etcd-servers",
    // A map flag: every occurrence adds Name=bool pairs (component-base featuregate).
    "feature-gates",
    "tls-cipher-suites",
];

/// Boolean flags of the kubelet, kube-apiserver, kube-controller-manager, kube-scheduler and
/// etcd. pflag never takes a boolean's value
/// from the next argument (`--anonymous-auth false` is not `--anonymous-auth=false`), so
/// the parser must not either.
const BOOL_FLAGS: &[&str] = &[
    "allow-privileged",
    "alsologtostderr",
    "anonymous-auth",
    "authentication-token-webhook",
    "auto-tls",
    "cgroups-per-qos",
    "client-cert-auth",
    "enable-aggregator-routing",
    "enable-bootstrap-token-auth",
    "enable-controller-attach-detach",
    "enable-debugging-handlers",
    "enable-garbage-collector",
    "enable-priority-and-fairness",
    "enable-server",
    "fail-swap-on",
    "logtostderr",
    "make-iptables-util-chains",
    "peer-auto-tls",
    "peer-client-cert-auth",
    "profiling",
    "protect-kernel-defaults",
    "register-node",
    "register-schedulable",
    "rotate-certificates",
    "rotate-server-certificates",
    "seccomp-default",
    "service-account-lookup",
    "serialize-image-pulls",
    "use-service-account-credentials",
];

/// A process's command-line flags, parsed the way pflag (used by the kubelet and the
/// kube-apiserver) parses them: `--name=value`, `--name value`, and boolean `--name`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessFlags {
    /// (name, value) in command-line order; a boolean given without a value has "true".
    entries: Vec<(String, String)>,
}

impl ProcessFlags {
    /// Parses arguments (without the program name). Names are normalized as pflag's
    /// WordSepNormalizeFunc does (`_` becomes `-`); arguments that are not flags are
    /// ignored; `--` ends the flags.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Self {
        let mut entries = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let arg = args[i].as_ref();
            i += 1;
            if arg == "--" {
                break;
            }
            let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                continue;
            };
            if stripped.is_empty() {
                continue;
            }
            let (name, value) = match stripped.split_once('=') {
                Some((name, value)) => (normalize_flag_name(name), value.to_owned()),
                None => {
                    let name = normalize_flag_name(stripped);
                    let next = args.get(i).map(AsRef::as_ref);
                    match next {
                        Some(next)
                            if !BOOL_FLAGS.contains(&name.as_str())
                                && (!next.starts_with('-') || is_number(next)) =>
                        {
                            i += 1;
                            (name, next.to_owned())
                        }
                        _ => (name, "true".to_owned()),
                    }
                }
            };
            entries.push((name, value));
        }
        Self { entries }
    }

    /// The value of the last occurrence of a flag (later flags override earlier ones).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the flag was given at all.
    pub fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|(n, _)| n == name)
    }

    /// A string-slice flag: every occurrence, split on commas, trimmed, empty items dropped.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// A boolean flag, parsed as Go's strconv.ParseBool does.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ControlPlaneError> {
        self.get(name)
            .map(|value| {
                parse_go_bool(value).ok_or_else(|| ControlPlaneError::FlagValue {
                    flag: name.to_owned(),
                    value: value.to_owned(),
                    expected: "boolean",
                })
            })
            .transpose()
    }

    /// An integer flag.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ControlPlaneError> {
        self.get(name)
            .map(|value| {
                value
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| ControlPlaneError::FlagValue {
                        flag: name.to_owned(),
                        value: value.to_owned(),
                        expected: "integer",
                    })
            })
            .transpose()
    }

    /// Every (name, value) in command-line order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The flags in `names`, one entry per flag: the last value, or for string-slice flags
    /// every value joined with commas. Sorted by name.
    pub fn select(&self, names: &[&str]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = names
            .iter()
            .filter(|name| self.has(name))
            .map(|name| {
                let value = if LIST_FLAGS.contains(name) {
                    self.list(name).join(",")
                } else {
                    self.get(name).unwrap_or_default().to_owned()
                };
                ((*name).to_owned(), value)
            })
            .collect();
        out.sort();
        out
    }
}

fn normalize_flag_name(name: &str) -> String {
    name.replace('_', "-")
}

fn is_number(s: &str) -> bool {
    s.strip_prefix('-')
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()))
}

/// Go's strconv.ParseBool, which pflag uses for boolean flags.
pub fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}
