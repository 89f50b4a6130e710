//! Where the API is and which token to send: flags and environment first, then a named
//! profile of the configuration file (`$XDG_CONFIG_HOME/dcbackup/config.toml`, else
//! `~/.config/dcbackup/config.toml`):
//!
//! ```toml
//! default-profile = "lab"
//! [profiles.lab]
//! url = "https://dcbackup.lab.example.com"
//! token-file = "/home/me/.config/dcbackup/lab.token"
//! ca-bundle = "/etc/pki/lab-ca.pem"
//! ```

use crate::args::Global;
use crate::error::CliError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct File {
    default_profile: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Profile {
    url: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    ca_bundle: Option<PathBuf>,
}

/// A token: never printed, not even by `{:?}`.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// The token itself, only to put it in a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

/// The settings a command talks to the API with.
#[derive(Debug)]
pub struct Settings {
    pub url: String,
    /// None: the API will answer 401, and the error says how to give one.
    pub token: Option<Token>,
    pub ca_bundle: Option<PathBuf>,
}

/// The default configuration file: XDG's config directory, else `~/.config`.
fn default_path() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base =
        xdg.or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("dcbackup").join("config.toml"))
}

fn read_file(path: &Path, explicit: bool) -> Result<File, CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| CliError::Usage(format!("configuration file {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(File::default()),
        Err(e) => Err(CliError::Usage(format!(
            "cannot read the configuration file {}: {e}",
            path.display()
        ))),
    }
}

fn read_token_file(path: &Path) -> Result<Token, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::Usage(format!(
            "cannot read the token file {}: {e}",
            path.display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(CliError::Usage(format!(
            "the token file {} is empty",
            path.display()
        )));
    }
    Ok(Token(token.to_owned()))
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

impl Settings {
    /// Resolves the settings: `--url`/DCBACKUP_URL; the token from `--token`/DCBACKUP_TOKEN,
    /// OS_AUTH_TOKEN, `--token-file`/DCBACKUP_TOKEN_FILE, then the profile's `token-file`
    /// or `token`; the CA bundle from `--ca-bundle`/DCBACKUP_CA_BUNDLE or the profile.
    pub fn resolve(global: &Global) -> Result<Settings, CliError> {
        let (path, explicit) = match &global.config {
            Some(path) => (Some(path.clone()), true),
            None => (default_path(), false),
        };
        let file = match &path {
            Some(path) => read_file(path, explicit)?,
            None => File::default(),
        };
        let where_ = path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the configuration file".into());
        let profile =
            match global.profile.as_ref().or(file.default_profile.as_ref()) {
                Some(name) => file.profiles.get(name).cloned().ok_or_else(|| {
                    CliError::Usage(format!("no profile named {name:?} in {where_}"))
                })?,
                None => file.profiles.get("default").cloned().unwrap_or_default(),
            };
        let url = non_empty(global.url.clone())
            .or(non_empty(profile.url))
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "no API URL: give --url, set DCBACKUP_URL, or set url in a profile of {where_}"
                ))
            })?;
        let token = if let Some(token) = non_empty(global.token.clone())
            .or_else(|| non_empty(std::env::var("OS_AUTH_TOKEN").ok()))
        {
            Some(Token(token.trim().to_owned()))
        } else if let Some(file) = &global.token_file {
            Some(read_token_file(file)?)
        } else if let Some(file) = &profile.token_file {
            Some(read_token_file(file)?)
        } else {
            non_empty(profile.token).map(|t| Token(t.trim().to_owned()))
        };
        Ok(Settings {
            url,
            token,
            ca_bundle: global.ca_bundle.clone().or(profile.ca_bundle),
        })
    }
}
