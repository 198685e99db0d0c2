//! Keeping Kubernetes up to date (`spec.kubernetesVersion`), pure: versions as the API
//! reports them and the embedded release table. The checks follow.

pub mod releases;
pub mod version;

pub use releases::TABLE_DATE;
pub use version::KubeVersion;
