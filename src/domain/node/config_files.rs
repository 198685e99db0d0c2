//! The config files the kube-apiserver's flags point at (EncryptionConfiguration,
//! AuthorizationConfiguration, AuthenticationConfiguration), read as far as the checks need.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

/// An error parsing a control-plane config file.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// The file is not YAML of the expected shape.
    #[error("{what} is not valid YAML: {source}")]
    Yaml {
        /// Which file ("EncryptionConfiguration", ...).
        what: &'static str,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// The file parses but is not what the flag expects.
    #[error("{what}: {message}")]
    Invalid {
        /// Which file.
        what: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A component's config file (kube-scheduler --config, etcd --config-file) is not
    /// what the component reads.
    #[error("{path}: {message}")]
    ConfigFile {
        /// The file, as a host path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A flag's value cannot be parsed.
    #[error("flag --{flag}={value:?} is not a valid {expected}")]
    FlagValue {
        /// The flag name.
        flag: String,
        /// Its value.
        value: String,
        /// What the flag takes.
        expected: &'static str,
    },
}

/// A config file of the kube-apiserver: YAML with a `kind` it must have.
trait ConfigFile: serde::de::DeserializeOwned {
    /// The kind the file must declare (also the name errors use).
    const KIND: &'static str;
    /// The kind the file declares.
    fn kind(&self) -> &str;
}

/// Parses a config file and checks its kind, as the kube-apiserver refuses another kind.
fn parse_config<T: ConfigFile>(text: &str) -> Result<T, ControlPlaneError> {
    let config: T = serde_saphyr::from_str(text).map_err(|source| ControlPlaneError::Yaml {
        what: T::KIND,
        source: Box::new(source),
    })?;
    if config.kind() != T::KIND {
        return Err(ControlPlaneError::Invalid {
            what: T::KIND,
            message: format!("kind is {:?}, want {}", config.kind(), T::KIND),
        });
    }
    Ok(config)
}

macro_rules! config_file {
    ($type:ident) => {
        impl ConfigFile for $type {
            const KIND: &'static str = stringify!($type);
            fn kind(&self) -> &str {
                &self.kind
            }
        }
    };
}

config_file!(EncryptionConfiguration);
config_file!(AuthorizationConfiguration);
config_file!(AuthenticationConfiguration);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptionConfiguration {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    resources: Vec<EncryptionResources>,
}

#[derive(Deserialize)]
struct EncryptionResources {
    #[serde(default)]
    resources: Vec<String>,
    /// Each provider is a one-key map (`aescbc: {keys: ...}`); the keys are never kept.
    #[serde(default)]
    providers: Vec<BTreeMap<String, IgnoredAny>>,
}

/// The providers an EncryptionConfiguration uses for secrets, in order (the first encrypts
/// new writes, the others only decrypt). The first entry whose resources cover secrets
/// (`secrets`, `secrets.`, `*.` or `*.*`) wins, as in the kube-apiserver. Empty when no entry
/// covers secrets (they are stored as plaintext). Key material is never returned.
pub fn secrets_providers(text: &str) -> Result<Vec<String>, ControlPlaneError> {
    let config: EncryptionConfiguration = parse_config(text)?;
    let covers_secrets = |r: &String| matches!(r.as_str(), "secrets" | "secrets." | "*." | "*.*");
    Ok(config
        .resources
        .iter()
        .find(|entry| entry.resources.iter().any(covers_secrets))
        .map(|entry| {
            entry
                .providers
                .iter()
                .flat_map(|p| p.keys().cloned())
                .collect()
        })
        .unwrap_or_default())
}

#[derive(Deserialize)]
struct AuthorizationConfiguration {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    authorizers: Vec<Authorizer>,
}

#[derive(Deserialize)]
struct Authorizer {
    #[serde(rename = "type")]
    kind: String,
}

/// The authorizer types of an AuthorizationConfiguration (--authorization-config), in order.
pub fn authorization_config_authorizers(text: &str) -> Result<Vec<String>, ControlPlaneError> {
    let config: AuthorizationConfiguration = parse_config(text)?;
    Ok(config.authorizers.into_iter().map(|a| a.kind).collect())
}

#[derive(Deserialize)]
struct AuthenticationConfiguration {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    anonymous: Option<AnonymousConfig>,
}

#[derive(Deserialize)]
struct AnonymousConfig {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    conditions: Vec<IgnoredAny>,
}

/// anonymous.enabled and the number of anonymous.conditions of an AuthenticationConfiguration
/// (--authentication-config); None when it has no anonymous section.
pub fn authentication_config_anonymous(
    text: &str,
) -> Result<Option<(bool, usize)>, ControlPlaneError> {
    let config: AuthenticationConfiguration = parse_config(text)?;
    Ok(config.anonymous.map(|a| (a.enabled, a.conditions.len())))
}
