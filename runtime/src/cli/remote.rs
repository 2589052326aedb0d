//! The REST client of the CLI's remote commands (`deploy`, `calls`,
//! `logs`, `replay`): one blocking request at a time on a current-thread
//! runtime, HTTP Basic `ACCOUNT:KEY`, JSON answers, and errors that say
//! what to fix.

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use super::CliError;

/// Where the API is and who calls it.
#[derive(Debug, Clone, clap::Args)]
pub struct RemoteArgs {
    /// Base URL of `switchyard serve`'s HTTP listener [env: SWITCHYARD_API]
    /// [default: http://127.0.0.1:8080].
    #[arg(long, value_name = "URL")]
    pub api: Option<String>,
    /// Account id [env: SWITCHYARD_ACCOUNT].
    #[arg(long)]
    pub account: Option<String>,
    /// The account's API key (secret) [env: SWITCHYARD_KEY].
    #[arg(long)]
    pub key: Option<String>,
}

pub const DEFAULT_API: &str = "http://127.0.0.1:8080";

/// A connection to the API; requests block the calling thread.
pub struct Remote {
    base: Url,
    account: String,
    key: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Remote {
    /// A client from the flags, falling back to the environment.
    pub fn new(args: &RemoteArgs) -> Result<Self, CliError> {
        let pick = |flag: &Option<String>, env: &str| {
            flag.clone()
                .or_else(|| std::env::var(env).ok())
                .filter(|v| !v.is_empty())
        };
        let api = pick(&args.api, "SWITCHYARD_API").unwrap_or_else(|| DEFAULT_API.into());
        let base = Url::parse(&api)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| CliError::Usage(format!("--api {api:?} is not an http(s) URL")))?;
        let missing = |what: &str, env: &str| {
            CliError::Usage(format!(
                "no {what}: pass --{what} or set {env} (create keys with POST /v1/accounts/ACCOUNT/keys)"
            ))
        };
        let account = pick(&args.account, "SWITCHYARD_ACCOUNT")
            .ok_or_else(|| missing("account", "SWITCHYARD_ACCOUNT"))?;
        let key =
            pick(&args.key, "SWITCHYARD_KEY").ok_or_else(|| missing("key", "SWITCHYARD_KEY"))?;
        let setup = |e: &dyn std::fmt::Display| CliError::Usage(format!("HTTP client: {e}"));
        let (tls, _) = crate::media::fetch::tls_config().map_err(|e| setup(&e))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(120))
            .user_agent(concat!("switchyard-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| setup(&e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| setup(&e))?;
        Ok(Self {
            base,
            account,
            key,
            client,
            runtime,
        })
    }

    /// `GET` of the path made of `segments` (each escaped), with `query`.
    pub fn get(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Value, CliError> {
        self.request(Method::GET, segments, query, None)
    }

    /// A request with a body of `content_type`.
    pub fn send(
        &self,
        method: Method,
        segments: &[&str],
        content_type: &'static str,
        body: Vec<u8>,
    ) -> Result<Value, CliError> {
        self.request(method, segments, &[], Some((content_type, body)))
    }

    fn request(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Value, CliError> {
        let url = self.url(segments, query);
        let mut request = self
            .client
            .request(method.clone(), url.clone())
            .basic_auth(&self.account, Some(&self.key));
        if let Some((content_type, body)) = body {
            request = request.header(CONTENT_TYPE, content_type).body(body);
        }
        let what = format!("{method} {}", url.path());
        let (status, bytes) = self
            .runtime
            .block_on(async {
                let response = request.send().await?;
                let status = response.status();
                Ok::<_, reqwest::Error>((status, response.bytes().await?))
            })
            .map_err(|e| self.unreachable(&what, &e))?;
        let json: Option<Value> = serde_json::from_slice(&bytes).ok();
        if status.is_success() {
            return json.ok_or_else(|| {
                CliError::Remote(format!("{what}: the answer is not JSON ({status})"))
            });
        }
        let message = json
            .as_ref()
            .and_then(|v| v["message"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_owned());
        Err(CliError::Remote(match status {
            StatusCode::UNAUTHORIZED => format!(
                "{what}: the API refused the credentials of account {:?} ({message}): check --account/--key",
                self.account
            ),
            _ => format!("{what}: {status}: {message}"),
        }))
    }

    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    fn unreachable(&self, what: &str, e: &reqwest::Error) -> CliError {
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(inner) = source {
            reason = format!("{reason}: {inner}");
            source = inner.source();
        }
        if e.is_connect() {
            return CliError::Remote(format!(
                "{what}: cannot connect ({reason}): is switchyard serve running at {}?",
                self.base
            ));
        }
        if e.is_timeout() {
            return CliError::Remote(format!("{what}: no answer from {} in time", self.base));
        }
        CliError::Remote(format!("{what}: {reason}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(api: &str) -> Remote {
        Remote::new(&RemoteArgs {
            api: Some(api.into()),
            account: Some("acme".into()),
            key: Some("secret".into()),
        })
        .unwrap()
    }

    #[test]
    fn path_segments_and_query_values_are_escaped() {
        let r = remote("http://127.0.0.1:1/base/");
        let url = r.url(
            &["v1", "numbers", "+1 555/0"],
            &[("number", "+1555".into())],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:1/base/v1/numbers/+1%20555%2F0?number=%2B1555"
        );
    }

    #[test]
    fn a_server_that_is_not_there_is_named() {
        // Port 1 on loopback: nothing listens, the connection is refused.
        let err = remote("http://127.0.0.1:1")
            .get(&["v1", "calls"], &[])
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("is switchyard serve running at http://127.0.0.1:1/?"),
            "{text}"
        );
    }

    #[test]
    fn bad_urls_and_missing_credentials_are_usage_errors() {
        let args = RemoteArgs {
            api: Some("ftp://x".into()),
            account: Some("a".into()),
            key: Some("k".into()),
        };
        assert!(matches!(Remote::new(&args), Err(CliError::Usage(_))));
    }
}
