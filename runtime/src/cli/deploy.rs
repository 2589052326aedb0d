//! `switchyard deploy COMPONENT --number N [--name NAME]`: upload a
//! component's version and point a number at it.

use std::path::PathBuf;
use std::process::ExitCode;

use reqwest::Method;
use serde_json::json;

use super::remote::{Remote, RemoteArgs};
use super::{CliError, read};

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The call-handler component (.wasm) to upload.
    pub component: PathBuf,
    /// The number (or SIP user part) to bind to the uploaded version.
    #[arg(long)]
    pub number: String,
    /// The component's name [default: the file name without `.wasm`].
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn deploy(args: DeployArgs) -> Result<ExitCode, CliError> {
    let bytes = read(&args.component)?;
    let name = match args.name {
        Some(name) => name,
        None => args
            .component
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .ok_or_else(|| {
                CliError::Usage(format!("{}: name it with --name", args.component.display()))
            })?,
    };
    let remote = Remote::new(&args.remote)?;
    // The same bytes again answer with their existing version: a re-run
    // deploys nothing new.
    let uploaded = remote.send(
        Method::POST,
        &["v1", "components", &name],
        "application/wasm",
        bytes,
    )?;
    let version = uploaded["version"]
        .as_u64()
        .ok_or_else(|| CliError::Remote(format!("the upload answer has no version: {uploaded}")))?;
    let hash = uploaded["hash"].as_str().unwrap_or("?");
    println!("uploaded {name} version {version} (sha256 {hash})");
    let body = json!({"component": name, "version": version});
    let bound = remote.send(
        Method::PUT,
        &["v1", "numbers", &args.number],
        "application/json",
        body.to_string().into_bytes(),
    )?;
    println!(
        "{} now runs {name} version {version}",
        bound["number"].as_str().unwrap_or(&args.number)
    );
    Ok(ExitCode::SUCCESS)
}
