//! Reading configuration from environment variables with documented defaults.
//!
//! Each service defines its own config struct; these helpers give every variable the same
//! behaviour: unset or empty means the default, and a value that does not parse is a start-up
//! error naming the variable.

use std::{fmt::Display, str::FromStr};

use secrecy::SecretString;

/// A configuration variable that is present but unusable.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}: {message}")]
pub struct ConfigError {
    /// The variable's name.
    pub name: String,
    /// What is wrong with it (never its value, which may be a secret).
    pub message: String,
}

impl ConfigError {
    /// A new error for variable `name`.
    pub fn new(name: &str, message: impl Into<String>) -> Self {
        Self { name: name.to_owned(), message: message.into() }
    }
}

/// The variable's value, or `None` when unset or empty.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The variable's value, or `default`.
pub fn string(name: &str, default: &str) -> String {
    var(name).unwrap_or_else(|| default.to_owned())
}

/// The variable parsed as `T`, or `default` when unset.
pub fn parse<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    match var(name) {
        None => Ok(default),
        Some(raw) => {
            raw.trim().parse().map_err(|e| ConfigError::new(name, format!("cannot parse: {e}")))
        }
    }
}

/// A boolean variable: `1`, `true`, `yes`, `on` or their opposites, case-insensitive.
pub fn flag(name: &str, default: bool) -> Result<bool, ConfigError> {
    match var(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
        Some(_) => Err(ConfigError::new(name, "expected true or false")),
    }
}

/// A secret variable, kept in a type that never prints its value.
pub fn secret(name: &str) -> Option<SecretString> {
    var(name).map(SecretString::from)
}

/// The deployment mode. Development mode relaxes what only a person at a terminal needs
/// (verification codes in responses, a generated signing key); production never does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Local development and tests.
    Development,
    /// A real deployment.
    Production,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Mode::Development),
            "production" | "prod" => Ok(Mode::Production),
            other => Err(format!("unknown mode {other:?} (development or production)")),
        }
    }
}

/// `APP_MODE`: `production` (default) or `development`.
pub fn mode() -> Result<Mode, ConfigError> {
    parse("APP_MODE", Mode::Production)
}
