//! Every setting of `kith up`, declared once.
//!
//! [`SETTINGS`] gives each setting its config-file key (the flag is the key with
//! dashes), its help, its profile values, how its value is checked and applied to a
//! [`NodeConfig`], and how the effective value is shown by `kith config show`. The
//! layers — embedded defaults, the profile, the settings file, the flags — are maps
//! from key to value, so which layer set a value is known by construction.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{self, NetSettings, NodeConfig, Profile};

mod table;
mod values;

pub(crate) use table::SETTINGS;
pub use values::parse_device;
use values::profile_of;

/// A setting's value, as a flag, the settings file or a profile gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An integer.
    Int(u64),
    /// A number.
    Float(f64),
    /// A switch.
    Bool(bool),
    /// A word or address.
    Text(String),
    /// A repeatable flag, or a list in the file.
    List(Vec<String>),
}

/// How a setting's value is checked and applied; the variant is also its kind.
#[derive(Clone, Copy)]
pub(crate) enum Apply {
    /// An integer.
    Int(fn(&mut Draft, u64) -> Result<(), String>),
    /// A number.
    Float(fn(&mut Draft, f64) -> Result<(), String>),
    /// A switch: a flag sets it, the file may set it either way.
    Bool(fn(&mut Draft, bool)),
    /// A word or address.
    Text(fn(&mut Draft, &str) -> Result<(), String>),
    /// A repeatable flag (a list of strings in the file).
    List(fn(&mut Draft, &[String]) -> Result<(), String>),
}

/// One setting.
pub(crate) struct Setting {
    /// Its key in the settings file; the flag is `--` and the key with dashes.
    pub(crate) key: &'static str,
    /// Its help, shown by `kith up --help`.
    pub(crate) help: &'static str,
    /// The placeholder for its value in the help.
    pub(crate) value_name: &'static str,
    /// Checks a value and applies it.
    pub(crate) apply: Apply,
    /// The effective value, as `kith config show` prints it.
    pub(crate) show: fn(&NodeConfig) -> String,
    /// What each profile sets it to, if anything.
    pub(crate) profile: fn(Profile) -> Option<String>,
}

impl Setting {
    /// The flag, e.g. `max-fuel` for `max_fuel`.
    pub(crate) fn flag(&self) -> String {
        self.key.replace('_', "-")
    }
}

/// A configuration being built: the node's, with the peer network kept until the end
/// (`offline` drops it then).
pub(crate) struct Draft {
    pub(crate) config: NodeConfig,
    pub(crate) net: NetSettings,
    pub(crate) offline: bool,
}

/// Which layer gave a setting its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A flag.
    Flag,
    /// The settings file.
    File(PathBuf),
    /// A profile.
    Profile(Profile),
    /// The embedded default.
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Flag => write!(f, "flag"),
            Self::File(p) => write!(f, "file {}", p.display()),
            Self::Profile(p) => write!(f, "profile {}", p.name()),
            Self::Default => write!(f, "default"),
        }
    }
}

/// A layer: the values one source gives.
pub type Layer = BTreeMap<&'static str, Value>;

/// The settings file, read into a layer.
///
/// # Errors
/// When the file cannot be read, is not TOML, has an unknown key or a value of the
/// wrong kind; the message names the file, the line and the key.
pub(crate) fn read_file(path: &Path) -> Result<Layer, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
    parse_file(&text).map_err(|e| format!("config file {}: {e}", path.display()))
}

/// A settings file's text, read into a layer.
///
/// # Errors
/// As [`read_file`], without the file name.
pub fn parse_file(text: &str) -> Result<Layer, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let line = |key: &str| {
        text.lines()
            .position(|l| l.trim_start().starts_with(key))
            .map_or(String::new(), |n| format!("line {}: ", n + 1))
    };
    let mut layer = Layer::new();
    for (key, value) in &table {
        let Some(setting) = SETTINGS.iter().find(|s| s.key == key) else {
            return Err(format!(
                "{}unknown key `{key}`; the keys are the flags of `kith up` with underscores",
                line(key)
            ));
        };
        let wrong = |want: &str| format!("{}`{key}` must be {want}", line(key));
        let value = match (setting.apply, value) {
            (Apply::Int(_), toml::Value::Integer(i)) => {
                Value::Int(u64::try_from(*i).map_err(|_| wrong("a non-negative integer"))?)
            }
            (Apply::Int(_), _) => return Err(wrong("an integer")),
            (Apply::Float(_), toml::Value::Float(f)) => Value::Float(*f),
            (Apply::Float(_), toml::Value::Integer(i)) => Value::Float(*i as f64),
            (Apply::Float(_), _) => return Err(wrong("a number")),
            (Apply::Bool(_), toml::Value::Boolean(b)) => Value::Bool(*b),
            (Apply::Bool(_), _) => return Err(wrong("true or false")),
            (Apply::Text(_), toml::Value::String(s)) => Value::Text(s.clone()),
            (Apply::Text(_), _) => return Err(wrong("a string")),
            (Apply::List(_), toml::Value::Array(items)) => Value::List(
                items
                    .iter()
                    .map(|i| i.as_str().map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or_else(|| wrong("a list of strings"))?,
            ),
            (Apply::List(_), toml::Value::String(s)) => Value::List(vec![s.clone()]),
            (Apply::List(_), _) => return Err(wrong("a list of strings")),
        };
        layer.insert(setting.key, value);
    }
    Ok(layer)
}

/// The configuration a settings file's text gives on its own (what the config-file
/// fuzz target checks: parsing, then every value's check).
///
/// # Errors
/// As [`parse_file`], or the first value refused.
pub fn config_from_text(text: &str) -> Result<NodeConfig, String> {
    let layer = parse_file(text)?;
    resolve(&layer, None).map(|r| r.config)
}

/// A profile's values, read into a layer.
fn profile_layer(profile: Profile) -> Layer {
    let mut layer = Layer::new();
    for s in SETTINGS {
        let Some(text) = (s.profile)(profile) else {
            continue;
        };
        let value = match s.apply {
            Apply::Int(_) => text.parse().ok().map(Value::Int),
            Apply::Float(_) => text.parse().ok().map(Value::Float),
            Apply::Bool(_) => text.parse().ok().map(Value::Bool),
            Apply::Text(_) => Some(Value::Text(text)),
            Apply::List(_) => Some(Value::List(vec![text])),
        };
        if let Some(v) = value {
            layer.insert(s.key, v);
        }
    }
    layer
}

/// The configuration the layers give, and where each setting came from.
pub(crate) struct Resolved {
    /// The configuration.
    pub(crate) config: NodeConfig,
    /// The profile in effect.
    pub(crate) profile: Option<Profile>,
    /// Each setting's source, in [`SETTINGS`] order.
    pub(crate) sources: Vec<(&'static Setting, Source)>,
}

/// Layers `flags` over the settings file at `file` (if any) over the profile either
/// names, over the defaults.
///
/// # Errors
/// The first value refused, naming the flag (or the file and key) and the rule.
pub(crate) fn resolve(flags: &Layer, file: Option<&Path>) -> Result<Resolved, String> {
    let file_layer = file.map(read_file).transpose()?.unwrap_or_default();
    let profile = match flags.get("profile").or_else(|| file_layer.get("profile")) {
        Some(Value::Text(name)) => Some(profile_of(name)?),
        _ => None,
    };
    let profile_values = profile.map(profile_layer).unwrap_or_default();
    let mut draft = Draft {
        config: NodeConfig::with_data_dir(config::default_data_dir()),
        net: NetSettings::default(),
        offline: false,
    };
    let mut sources = Vec::with_capacity(SETTINGS.len());
    for setting in SETTINGS {
        let found = [
            (flags.get(setting.key), Source::Flag),
            (
                file_layer.get(setting.key),
                Source::File(file.map(Path::to_owned).unwrap_or_default()),
            ),
        ]
        .into_iter()
        .chain(profile.map(|p| (profile_values.get(setting.key), Source::Profile(p))))
        .find_map(|(v, source)| v.map(|v| (v, source)));
        let Some((value, source)) = found else {
            sources.push((setting, Source::Default));
            continue;
        };
        let whose = match &source {
            Source::Flag => format!("--{}", setting.flag()),
            Source::File(p) => format!("{}: {}:", p.display(), setting.key),
            Source::Profile(p) => format!("profile {}: {}:", p.name(), setting.key),
            Source::Default => String::new(),
        };
        apply(setting, &mut draft, value).map_err(|e| format!("{whose} {e}"))?;
        sources.push((setting, source));
    }
    let config = finish(draft)?;
    Ok(Resolved {
        config,
        profile,
        sources,
    })
}

fn apply(setting: &Setting, draft: &mut Draft, value: &Value) -> Result<(), String> {
    match (setting.apply, value) {
        (Apply::Int(f), Value::Int(v)) => f(draft, *v),
        (Apply::Float(f), Value::Float(v)) => f(draft, *v),
        (Apply::Float(f), Value::Int(v)) => f(draft, *v as f64),
        (Apply::Bool(f), Value::Bool(v)) => {
            f(draft, *v);
            Ok(())
        }
        (Apply::Text(f), Value::Text(v)) => f(draft, v),
        (Apply::List(f), Value::List(v)) => f(draft, v),
        (Apply::List(f), Value::Text(v)) => f(draft, std::slice::from_ref(v)),
        _ => Err("has a value of the wrong kind".into()),
    }
}

/// The checks that involve more than one setting, then the configuration.
fn finish(draft: Draft) -> Result<NodeConfig, String> {
    let Draft {
        mut config,
        net,
        offline,
    } = draft;
    if config.max_concurrent_calls == 0 && offline {
        return Err(
            "--max-concurrent-calls 0 makes a gateway that runs nothing itself; \
                    it needs the peer network, so it cannot be --offline"
                .into(),
        );
    }
    if config.trusted_only && config.trust.is_empty() {
        return Err(
            "--trusted-only needs at least one --trust NAMESPACE, or the node would run nothing"
                .into(),
        );
    }
    config.net = (!offline).then_some(net);
    Ok(config)
}
