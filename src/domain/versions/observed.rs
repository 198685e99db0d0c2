//! The kube-apiserver versions observed, read once for every check.

use crate::domain::versions::version::KubeVersion;

/// One kube-apiserver whose version was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiServerVersion<'a> {
    /// Where it was observed: "/version" or a node name.
    pub at: &'a str,
    /// The gitVersion as reported, e.g. "v1.36.3-eks-abc123".
    pub git_version: &'a str,
    pub version: KubeVersion,
}

impl ApiServerVersion<'_> {
    /// "v1.36.3 at /version", for messages.
    pub fn describe(&self) -> String {
        format!("{} at {}", self.git_version, self.at)
    }
}

/// Every observation, split into versions read and observations that could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ApiServers<'a> {
    /// Sorted by (version, where), so the first is the oldest and the last the newest.
    pub read: Vec<ApiServerVersion<'a>>,
    /// (where, why), in input order.
    pub unreadable: Vec<(&'a str, String)>,
}

impl<'a> ApiServers<'a> {
    pub fn read(observations: &'a [(String, Result<String, String>)]) -> Self {
        let mut servers = Self::default();
        for (at, observed) in observations {
            let parsed = observed
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|git| KubeVersion::parse(git).map(|version| (git, version)));
            match parsed {
                Ok((git_version, version)) => servers.read.push(ApiServerVersion {
                    at,
                    git_version,
                    version,
                }),
                Err(why) => servers.unreadable.push((at, why)),
            }
        }
        servers
            .read
            .sort_by(|a, b| (a.version, a.at).cmp(&(b.version, b.at)));
        servers
    }

    /// The oldest version read: the one whose support and skew bound the cluster.
    pub fn oldest(&self) -> Option<&ApiServerVersion<'a>> {
        self.read.first()
    }

    /// The newest version read.
    pub fn newest(&self) -> Option<&ApiServerVersion<'a>> {
        self.read.last()
    }

    /// "/version: forbidden; cp-2: timeout", for messages.
    pub fn describe_unreadable(&self) -> String {
        let parts: Vec<String> = self
            .unreadable
            .iter()
            .map(|(at, why)| format!("{at}: {why}"))
            .collect();
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(at: &str, version: Result<&str, &str>) -> (String, Result<String, String>) {
        (
            at.to_owned(),
            version.map(str::to_owned).map_err(str::to_owned),
        )
    }

    #[test]
    fn splits_read_from_unreadable_and_orders_oldest_first() {
        let observations = [
            obs("/version", Ok("v1.36.3")),
            obs("cp-1", Ok("v1.34.1+k3s1")),
            obs("cp-2", Err("connection refused")),
            obs("cp-3", Ok("garbage")),
            obs("cp-4", Ok("v1.36.0")),
        ];
        let servers = ApiServers::read(&observations);
        let order: Vec<&str> = servers.read.iter().map(|s| s.at).collect();
        assert_eq!(order, ["cp-1", "cp-4", "/version"]);
        assert_eq!(servers.oldest().unwrap().describe(), "v1.34.1+k3s1 at cp-1");
        assert_eq!(servers.newest().unwrap().describe(), "v1.36.3 at /version");
        assert_eq!(
            servers.describe_unreadable(),
            "cp-2: connection refused; cp-3: \"garbage\" is not a Kubernetes version (expected e.g. v1.36.3)"
        );
    }

    #[test]
    fn nothing_observed_is_nothing_read() {
        let servers = ApiServers::read(&[]);
        assert_eq!(servers.oldest(), None);
        assert_eq!(servers.newest(), None);
        assert_eq!(servers.describe_unreadable(), "");
    }
}
