//! Ingress host names and which TLS host covers which rule host, with the semantics of the
//! Ingress API (k8s.io/api networking/v1 `IngressRule.host`): a host is "precise" or a
//! wildcard `*.` followed by a precise suffix, and the wildcard matches exactly one label
//! (`*.example.com` covers `a.example.com`, not `example.com`, not `a.b.example.com`).

/// Why the API server would reject a host (its validation: a lowercase DNS-1123 subdomain,
/// optionally behind one leading `*.` label; no IP address), or None when it is valid.
pub fn invalid_host(host: &str) -> Option<String> {
    let precise = host.strip_prefix("*.").unwrap_or(host);
    if host.len() > 253 {
        return Some(format!("{host:?} is longer than 253 characters"));
    }
    if precise.is_empty() || host == "*" {
        return Some(format!("{host:?} is empty or only a wildcard"));
    }
    if precise
        .split('.')
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some(format!("{host:?} is an IP address, not a host name"));
    }
    for label in precise.split('.') {
        if let Some(why) = invalid_label(label) {
            return Some(format!("{host:?}: {why}"));
        }
    }
    None
}

fn invalid_label(label: &str) -> Option<&'static str> {
    let bytes = label.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return Some("has an empty label (two dots, or a trailing dot)");
    };
    if label.len() > 63 {
        return Some("has a label longer than 63 characters");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    {
        return Some(
            "may hold only lowercase ASCII letters, digits, '-' and '.' (an internationalised name must be written as its xn-- A-label)",
        );
    }
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Some("has a label that starts or ends with '-'");
    }
    None
}

/// Whether the TLS host `tls` covers requests for the rule host `rule`: equal (ASCII
/// case-insensitive), or `tls` is `*.S` and `rule` is one label followed by `.S`. A wildcard
/// rule host is covered only by the same wildcard.
pub fn covers(tls: &str, rule: &str) -> bool {
    if tls.eq_ignore_ascii_case(rule) {
        return true;
    }
    let Some(suffix) = tls.strip_prefix("*.") else {
        return false;
    };
    match rule.split_once('.') {
        Some((label, rest)) => {
            !label.is_empty() && !label.contains('*') && rest.eq_ignore_ascii_case(suffix)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_covers_exactly_one_label() {
        let cases = [
            ("shop.example.com", "shop.example.com", true),
            ("SHOP.example.com", "shop.example.com", true),
            ("shop.example.com", "api.example.com", false),
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "a.b.example.com", false),
            ("*.b.example.com", "a.b.example.com", true),
            ("*.example.com", "*.example.com", true),
            ("*.example.com", "*.a.example.com", false),
            ("a.example.com", "*.example.com", false),
            ("*.example.com", "a.example.org", false),
            ("*.example.com", ".example.com", false),
        ];
        for (tls, rule, expected) in cases {
            assert_eq!(covers(tls, rule), expected, "{tls} covers {rule}");
        }
    }

    #[test]
    fn hosts_the_api_server_rejects_are_named() {
        for valid in [
            "shop.example.com",
            "*.example.com",
            "xn--bcher-kva.example",
            "a",
            "1a.example.com",
        ] {
            assert_eq!(invalid_host(valid), None, "{valid}");
        }
        for (invalid, why) in [
            ("Shop.example.com", "lowercase"),
            ("bücher.example", "A-label"),
            ("shop.example.com.", "empty label"),
            ("10.0.0.1", "IP address"),
            ("*", "only a wildcard"),
            ("a.*.example.com", "lowercase"),
            ("-a.example.com", "starts or ends"),
            ("", "empty"),
        ] {
            let message = invalid_host(invalid).unwrap_or_default();
            assert!(message.contains(why), "{invalid}: {message}");
        }
        assert!(invalid_host(&"a".repeat(64)).is_some());
        assert!(invalid_host(&format!("{}.com", "a.".repeat(130))).is_some());
    }
}
