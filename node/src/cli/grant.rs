//! `kith grant`, `kith revoke`, `kith grants`: who may write a namespace's documents.

use std::process::ExitCode;

use clap::Args;

use super::{client, explain};

/// The subjects of `kith grant` / `kith revoke`.
#[derive(Debug, Args)]
pub struct GrantArgs {
    /// The namespace (its id, or the name of its key on this node).
    pub namespace: String,
    /// A key that may write (64 hex: a publisher key or a node's `state_key`).
    #[arg(long = "writer", value_name = "KEY")]
    pub writers: Vec<String>,
    /// A function (by id) that may read and write the namespace's documents.
    #[arg(long = "function", value_name = "ID")]
    pub functions: Vec<String>,
    /// An alias NAME@CHANNEL of the namespace whose functions may.
    #[arg(long = "alias", value_name = "NAME@CHANNEL")]
    pub aliases: Vec<String>,
}

impl GrantArgs {
    fn subjects(&self) -> serde_json::Value {
        serde_json::json!({
            "writers": self.writers,
            "functions": self.functions,
            "aliases": self.aliases,
        })
    }
}

fn print(v: &serde_json::Value) {
    println!(
        "namespace {}  seq {}",
        v["namespace"].as_str().unwrap_or("?"),
        v["seq"]
    );
    for (what, key) in [
        ("writer", "writers"),
        ("function", "functions"),
        ("alias", "aliases"),
    ] {
        for s in v[key].as_array().into_iter().flatten() {
            println!("  {what:<9} {}", s.as_str().unwrap_or("?"));
        }
    }
}

/// `kith grant` (`revoke` false) or `kith revoke` (true).
pub(super) fn grant_command(api: &str, args: &GrantArgs, revoke: bool) -> anyhow::Result<ExitCode> {
    let body = if revoke {
        serde_json::json!({ "revoke": args.subjects() })
    } else {
        serde_json::json!({ "grant": args.subjects() })
    };
    let v = client(api)?
        .grants_change(&args.namespace, &body)
        .map_err(explain)?;
    print(&v);
    Ok(ExitCode::SUCCESS)
}

/// `kith grants NAMESPACE`.
pub(super) fn grants_command(api: &str, namespace: &str) -> anyhow::Result<ExitCode> {
    let v = client(api)?
        .get_json(&format!("/v1/grants/{namespace}"))
        .map_err(explain)?;
    print(&v);
    Ok(ExitCode::SUCCESS)
}
