//! The pure core: no kube::Client, no async. Everything here is unit-tested with inline YAML.
