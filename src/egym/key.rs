//! The API key: where it comes from, and the key itself, which no log line can show.

use std::fmt;
use std::path::{Path, PathBuf};

/// The systemd credential name (`LoadCredential=egym-api-key:...`).
pub const API_KEY_CREDENTIAL: &str = "egym-api-key";
pub const API_KEY_ENV: &str = "EGYM_API_KEY";

/// Where the API key comes from. The key is read when needed (at start and when delivery is
/// paused for a refused key), so a corrected key file takes effect without a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiKeySource {
    /// `egym.api-key-file`.
    File(PathBuf),
    /// `$CREDENTIALS_DIRECTORY/egym-api-key`, as systemd's `LoadCredential=` provides it.
    Credential(PathBuf),
    /// The `EGYM_API_KEY` environment variable.
    Env,
    /// Given by the program itself (the demo's stand-in key).
    Literal(ApiKey),
}

/// The API key. Its `Debug` shows nothing of it, so it cannot leak through a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: String) -> Self {
        ApiKey(key)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl ApiKeySource {
    /// Picks the source: the configured file, else the systemd credential, else the environment.
    pub fn choose(api_key_file: Option<PathBuf>) -> ApiKeySource {
        if let Some(path) = api_key_file {
            return ApiKeySource::File(path);
        }
        if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            let path = Path::new(&dir).join(API_KEY_CREDENTIAL);
            if path.exists() {
                return ApiKeySource::Credential(path);
            }
        }
        ApiKeySource::Env
    }

    /// Where the key is read from, in words (never the key).
    pub fn describe(&self) -> String {
        match self {
            ApiKeySource::File(path) => format!("{} (egym.api-key-file)", path.display()),
            ApiKeySource::Credential(path) => format!(
                "{} (the systemd credential {API_KEY_CREDENTIAL})",
                path.display()
            ),
            ApiKeySource::Env => format!("the environment variable {API_KEY_ENV}"),
            ApiKeySource::Literal(_) => "built in".into(),
        }
    }

    /// Reads the key. The error says where it looked, never what it found.
    pub fn read(&self) -> Result<ApiKey, String> {
        let (key, origin) = match self {
            ApiKeySource::Literal(key) => return Ok(key.clone()),
            ApiKeySource::File(path) | ApiKeySource::Credential(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read the API key file {}: {e}", path.display()))?;
                (text, path.display().to_string())
            }
            ApiKeySource::Env => match std::env::var(API_KEY_ENV) {
                Ok(key) => (key, API_KEY_ENV.to_string()),
                Err(_) => {
                    return Err(format!(
                        "no API key: set egym.api-key-file, or give the systemd credential \
                         {API_KEY_CREDENTIAL} (LoadCredential=), or set {API_KEY_ENV}"
                    ));
                }
            },
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("the API key in {origin} is empty"));
        }
        if key.chars().any(|c| c.is_control() || c == ' ') {
            return Err(format!(
                "the API key in {origin} holds spaces or control characters; it must be one line"
            ));
        }
        Ok(ApiKey(key.to_string()))
    }
}
