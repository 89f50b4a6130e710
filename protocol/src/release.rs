//! The one release type of dcbackup: what a subcloud runs, what a backup is of, and the
//! directory and S3 prefix a backup lives under.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A software release such as `24.09`. It names a directory of the agent's local store and
/// a prefix of the backup bucket, so every release is 1 to 64 ASCII letters, digits, `.`,
/// `_` and `-`, starting with a letter or digit (what the agent protocol accepts, and what
/// [`FromStr`] and serde check). A release a dcmanager caller gives is narrower still:
/// [`Release::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Release(String);

/// A release given in a field of a dcmanager request that is not in dcmanager's form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{value}' is not a release; expected a form like 24.09")]
pub struct InvalidRelease {
    /// The request's field (`software-version`, `release_version`, ...).
    pub field: String,
    pub value: String,
}

impl Release {
    /// A release as dcmanager's API takes it (`software-version`, `release_version`): two or
    /// three dot-separated numbers of 1 to 4 digits, such as `24.09` or `10.0.1`.
    pub fn parse(field: &str, value: &str) -> Result<Release, InvalidRelease> {
        let parts: Vec<&str> = value.split('.').collect();
        let numeric = parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()));
        if !(2..=3).contains(&parts.len()) || !numeric {
            return Err(InvalidRelease {
                field: field.to_owned(),
                value: value.to_owned(),
            });
        }
        Ok(Release(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Release {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let valid = (1..=64).contains(&value.len())
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if valid {
            Ok(Release(value))
        } else {
            Err(format!(
                "invalid release {value:?}: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            ))
        }
    }
}

impl FromStr for Release {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Release::try_from(s.to_owned())
    }
}

impl From<Release> for String {
    fn from(value: Release) -> Self {
        value.0
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_safe_directory_names() {
        for good in ["24.09", "22.12", "stx-10.0", "R1_2"] {
            assert!(good.parse::<Release>().is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            ".hidden",
            "-x",
            "24 09",
            &"9".repeat(65),
        ] {
            assert!(bad.parse::<Release>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dcmanager_releases_are_dotted_numbers() {
        for good in ["24.09", "22.12", "10.0.1"] {
            assert!(Release::parse("release", good).is_ok(), "{good}");
        }
        for bad in ["", "24", "24.", "a.b", "24.09.1.2", "24..09"] {
            assert!(Release::parse("release", bad).is_err(), "{bad}");
        }
        // Every dcmanager release is also a release the agent takes.
        let parsed = Release::parse("release", "10.0.1").expect("release");
        assert_eq!(parsed.as_str().parse::<Release>(), Ok(parsed));
    }
}
