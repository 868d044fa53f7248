//! `kith key …` and `kith alias …`: publisher keys, and aliases that point at hashes.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::{client, explain};

/// `kith key …`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a publisher key on the node (kept in its data dir, mode 0600).
    New {
        /// A local name for it (a petname: `NAME/app@prod` works on this node).
        name: String,
    },
    /// List the node's publisher keys and their namespace ids.
    List,
}

/// `kith alias …` (REF is NAMESPACE/NAME@CHANNEL)
#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Point REF at one function.
    Set {
        /// The alias.
        reference: String,
        /// The function id.
        function: String,
        /// Run every call through REF on N peers of distinct networks and return the
        /// majority's answer (1 turns it off; default: keep REF's setting).
        #[arg(long, value_name = "N")]
        verify: Option<u8>,
    },
    /// Split REF over several functions by weight, e.g. HASH1=90 HASH2=10.
    Split {
        /// The alias.
        reference: String,
        /// FUNCTION=WEIGHT pairs.
        #[arg(required = true, num_args = 1..)]
        targets: Vec<String>,
        /// As for `set`.
        #[arg(long, value_name = "N")]
        verify: Option<u8>,
    },
    /// Point TO at FROM's current targets (e.g. me/app@staging me/app@prod).
    Promote {
        /// The alias to copy.
        from: String,
        /// The alias to move.
        to: String,
    },
    /// Point REF back at its previous record's targets.
    Rollback {
        /// The alias.
        reference: String,
    },
    /// Show REF's current record.
    Show {
        /// The alias.
        reference: String,
    },
    /// Show every record of REF, oldest first.
    History {
        /// The alias.
        reference: String,
    },
    /// List every alias the node knows.
    List,
}

pub(super) fn alias_command(api: &str, command: AliasCommand) -> anyhow::Result<ExitCode> {
    let c = client(api)?;
    match command {
        AliasCommand::Set {
            reference,
            function,
            verify,
        } => print_record(
            &c.alias_set_verified(&reference, &[(&function, 1)], verify)
                .map_err(explain)?,
        ),
        AliasCommand::Split {
            reference,
            targets,
            verify,
        } => {
            let parsed: Vec<(String, u32)> = targets
                .iter()
                .map(|t| {
                    let (f, w) = t
                        .split_once('=')
                        .with_context(|| format!("{t:?} is not FUNCTION=WEIGHT"))?;
                    let w: u32 = w.parse().ok().filter(|w| *w > 0).with_context(|| {
                        format!("weight {w:?} in {t:?} is not a whole number above 0")
                    })?;
                    Ok((f.to_owned(), w))
                })
                .collect::<anyhow::Result<_>>()?;
            let refs: Vec<(&str, u32)> = parsed.iter().map(|(f, w)| (f.as_str(), *w)).collect();
            print_record(
                &c.alias_set_verified(&reference, &refs, verify)
                    .map_err(explain)?,
            );
        }
        AliasCommand::Promote { from, to } => {
            print_record(&c.alias_promote(&from, &to).map_err(explain)?);
        }
        AliasCommand::Rollback { reference } => {
            print_record(&c.alias_rollback(&reference).map_err(explain)?);
        }
        AliasCommand::Show { reference } => {
            print_record(
                &c.get_json(&format!("/v1/aliases/{reference}"))
                    .map_err(explain)?,
            );
        }
        AliasCommand::History { reference } => {
            let v = c
                .get_json(&format!("/v1/aliases/{reference}/history"))
                .map_err(explain)?;
            for r in v.as_array().into_iter().flatten() {
                print_record(r);
            }
        }
        AliasCommand::List => {
            let v = c.get_json("/v1/aliases").map_err(explain)?;
            for r in v.as_array().into_iter().flatten() {
                print_record(r);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_record(v: &serde_json::Value) {
    let targets: Vec<String> = v["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}={}",
                t["function"].as_str().unwrap_or_default(),
                t["weight"]
            )
        })
        .collect();
    let verify = match v["verify"].as_u64() {
        Some(n) if n > 1 => format!("  verify {n}"),
        _ => String::new(),
    };
    println!(
        "{}  seq {}  {}{verify}",
        v["alias"].as_str().unwrap_or_default(),
        v["seq"],
        targets.join(" ")
    );
}
