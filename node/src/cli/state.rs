//! `kith state …`: application state documents on a node.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::{client, explain};

/// `kith state …` (NAMESPACE: a namespace id, or the name of a key on the node;
/// PATH: keys separated by `/`, e.g. `/cart/items/0`).
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Print the value at PATH (the whole document without PATH) as JSON.
    Get {
        /// The document, NAMESPACE/NAME.
        doc: String,
        /// A key path.
        path: Option<String>,
    },
    /// Put a JSON value at PATH (maps on the way are created).
    Put {
        /// The document, NAMESPACE/NAME.
        doc: String,
        /// A key path.
        path: String,
        /// The value, as JSON (a string needs its quotes: '"tea"').
        value: String,
    },
    /// Delete the value at PATH.
    Delete {
        /// The document.
        doc: String,
        /// A key path.
        path: String,
    },
    /// Add N (default 1) to the counter at PATH; concurrent increments add up.
    Increment {
        /// The document.
        doc: String,
        /// A key path.
        path: String,
        /// How much to add (may be negative).
        #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
        by: i64,
    },
    /// Append a JSON value to the list at PATH.
    Append {
        /// The document.
        doc: String,
        /// A key path.
        path: String,
        /// The value, as JSON.
        value: String,
    },
    /// Write the document as a standard Automerge binary to stdout.
    Export {
        /// The document.
        doc: String,
    },
    /// Merge a standard Automerge binary into the document.
    Import {
        /// The document.
        doc: String,
        /// The file.
        file: PathBuf,
    },
    /// Print the document's heads (Automerge change hashes).
    Heads {
        /// The document.
        doc: String,
    },
    /// Hold the document on this node, and fetch it from peers that have it.
    Pin {
        /// The document.
        doc: String,
    },
    /// List the documents this node holds.
    List,
}

/// `/v1/state/NS/NAME` for a document reference, checked locally first.
fn state_url(doc: &str) -> anyhow::Result<String> {
    let r: kith_protocol::state::DocRef = doc.parse()?;
    Ok(format!("/v1/state/{}/{}", r.namespace, r.name))
}

fn path_query(path: &str) -> anyhow::Result<String> {
    kith_protocol::state::parse_path(path)?;
    let mut q = String::from("?path=");
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            q.push(char::from(b));
        } else {
            q.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(q)
}

fn json_arg(value: &str) -> anyhow::Result<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_str(value).with_context(|| {
        format!("{value:?} is not a JSON value (a string needs quotes: '\"{value}\"')")
    })?;
    Ok(serde_json::to_vec(&v)?)
}

pub(super) fn state_command(api: &str, command: StateCommand) -> anyhow::Result<ExitCode> {
    use kith_sdk::client::Method;
    let c = client(api)?;
    let heads = |v: &serde_json::Value| {
        for h in v["heads"].as_array().into_iter().flatten() {
            println!("{}", h.as_str().unwrap_or_default());
        }
    };
    match command {
        StateCommand::Get { doc, path } => {
            let q = path
                .as_deref()
                .map(path_query)
                .transpose()?
                .unwrap_or_default();
            let v = c
                .get_json(&format!("{}{q}", state_url(&doc)?))
                .map_err(explain)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        StateCommand::Put { doc, path, value } => {
            let url = format!("{}{}", state_url(&doc)?, path_query(&path)?);
            heads(
                &c.send_bytes(Method::PUT, &url, json_arg(&value)?)
                    .map_err(explain)?,
            );
        }
        StateCommand::Delete { doc, path } => {
            let url = format!("{}{}", state_url(&doc)?, path_query(&path)?);
            heads(
                &c.send_bytes(Method::DELETE, &url, Vec::new())
                    .map_err(explain)?,
            );
        }
        StateCommand::Increment { doc, path, by } => {
            let url = format!(
                "{}/increment{}&by={by}",
                state_url(&doc)?,
                path_query(&path)?
            );
            let v = c
                .send_bytes(Method::POST, &url, Vec::new())
                .map_err(explain)?;
            println!("{}", v["value"]);
        }
        StateCommand::Append { doc, path, value } => {
            let url = format!("{}/append{}", state_url(&doc)?, path_query(&path)?);
            heads(
                &c.send_bytes(Method::POST, &url, json_arg(&value)?)
                    .map_err(explain)?,
            );
        }
        StateCommand::Export { doc } => {
            let bytes = c
                .get_bytes(&format!("{}/export", state_url(&doc)?))
                .map_err(explain)?;
            std::io::Write::write_all(&mut std::io::stdout().lock(), &bytes)?;
        }
        StateCommand::Import { doc, file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let url = format!("{}/import", state_url(&doc)?);
            heads(&c.send_bytes(Method::POST, &url, bytes).map_err(explain)?);
        }
        StateCommand::Heads { doc } => {
            heads(
                &c.get_json(&format!("{}/heads", state_url(&doc)?))
                    .map_err(explain)?,
            );
        }
        StateCommand::Pin { doc } => {
            let url = format!("{}/pin", state_url(&doc)?);
            heads(
                &c.send_bytes(Method::POST, &url, Vec::new())
                    .map_err(explain)?,
            );
        }
        StateCommand::List => {
            let v = c.get_json("/v1/state").map_err(explain)?;
            for d in v.as_array().into_iter().flatten() {
                println!(
                    "{}  {} bytes  {} heads{}",
                    d["doc"].as_str().unwrap_or_default(),
                    d["bytes"],
                    d["heads"].as_array().map_or(0, Vec::len),
                    if d["pinned"] == true { "  pinned" } else { "" }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
