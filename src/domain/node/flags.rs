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

/// Go's time.ParseDuration (`[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or `0`), in nanoseconds,
/// which the kubelet uses for duration flags and metav1.Duration fields. None where Go
/// returns an error (no unit, unknown unit, overflow).
pub fn parse_go_duration(text: &str) -> Option<i64> {
    const LIMIT: u64 = 1 << 63;
    let mut s = text.as_bytes();
    let mut neg = false;
    if let Some((&c, rest)) = s.split_first()
        && (c == b'-' || c == b'+')
    {
        neg = c == b'-';
        s = rest;
    }
    if s == b"0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return None;
        }
        // The integer part; overflow is an error.
        let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut int: u64 = 0;
        for &c in &s[..digits] {
            if int > LIMIT / 10 {
                return None;
            }
            int = int * 10 + u64::from(c - b'0');
            if int > LIMIT {
                return None;
            }
        }
        let pre = digits > 0;
        s = &s[digits..];
        // The fraction: digits beyond what fits are ignored, as Go does.
        let (mut frac, mut scale, mut post) = (0_u64, 1_f64, false);
        if s.first() == Some(&b'.') {
            s = &s[1..];
            let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
            post = digits > 0;
            let mut overflow = false;
            for &c in &s[..digits] {
                if overflow {
                    continue;
                }
                if frac > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let next = frac * 10 + u64::from(c - b'0');
                if next > LIMIT {
                    overflow = true;
                    continue;
                }
                frac = next;
                scale *= 10.0;
            }
            s = &s[digits..];
        }
        if !pre && !post {
            return None;
        }
        let unit_len = s
            .iter()
            .take_while(|c| !(**c == b'.' || c.is_ascii_digit()))
            .count();
        let unit: u64 = match &s[..unit_len] {
            b"ns" => 1,
            // "us", the micro sign U+00B5 and the Greek mu U+03BC.
            b"us" | b"\xc2\xb5s" | b"\xce\xbcs" => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            _ => return None,
        };
        s = &s[unit_len..];
        if int > LIMIT / unit {
            return None;
        }
        let mut value = int * unit;
        if frac > 0 {
            // Go converts the fraction through float64 too.
            let part = (frac as f64 * (unit as f64 / scale)) as u64;
            value += part;
            if value > LIMIT {
                return None;
            }
        }
        total += value;
        if total > LIMIT {
            return None;
        }
    }
    if neg {
        // -(1<<63) is the one value whose magnitude does not fit i64.
        return Some(if total == LIMIT {
            i64::MIN
        } else {
            -i64::try_from(total).ok()?
        });
    }
    i64::try_from(total).ok()
}

/// Go's time.Duration.String: `4h0m0s`, `1m30s`, `1.5s`, `300ms`, `0s`.
pub fn format_go_duration(nanos: i64) -> String {
    let mut u = nanos.unsigned_abs();
    let mut out = String::new();
    // Fraction of v/10^prec without trailing zeros (and no point when it is 0), and v/10^prec.
    let frac = |v: u64, prec: u32| -> (String, u64) {
        let pow = 10_u64.pow(prec);
        let digits = format!("{:0width$}", v % pow, width = prec as usize);
        let digits = digits.trim_end_matches('0');
        let text = if digits.is_empty() {
            String::new()
        } else {
            format!(".{digits}")
        };
        (text, v / pow)
    };
    if u < 1_000_000_000 {
        let (prec, unit) = match u {
            0 => return "0s".to_owned(),
            1..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "\u{b5}s"),
            _ => (6, "ms"),
        };
        let (fraction, whole) = frac(u, prec);
        out.push_str(&format!("{whole}{fraction}{unit}"));
    } else {
        let (fraction, whole) = frac(u, 9);
        u = whole;
        let seconds = format!("{}{fraction}s", u % 60);
        u /= 60;
        if u > 0 {
            let minutes = u % 60;
            u /= 60;
            if u > 0 {
                out.push_str(&format!("{u}h"));
            }
            out.push_str(&format!("{minutes}m"));
        }
        out.push_str(&seconds);
    }
    if nanos < 0 {
        out.insert(0, '-');
    }
    out
}
