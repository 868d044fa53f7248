//! Checks of a module before anything is stored or compiled.
//!
//! [`inspect`] checks, in this order: the size cap; the magic and version; the
//! structural limits ([`structure`]: counts, body sizes, locals, nesting, one memory);
//! the full WebAssembly validator with exactly the accepted [`features`]; then the
//! ABI: the required exports with their exact signatures, imports only of known host
//! functions with their exact signatures, one 32-bit memory, tables within the
//! manifest's `table_elements`, and at most one valid manifest. Every refusal names
//! the problem and, where there is one, the limit.

pub mod features;
mod section;
pub mod structure;

pub use section::{start_as_export, with_manifest};

use wasmparser::{
    CompositeInnerType, ExternalKind, FuncType, Parser, Payload, TypeRef, ValType as WValType,
    Validator,
};

use crate::abi::{self, Signature, ValType};
use crate::manifest::{Manifest, ManifestError, WASM_PAGE};

/// What a valid module told us about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// The manifest, or the defaults when the module carries none.
    pub manifest: Manifest,
    /// True if and only if the module carries a manifest section.
    pub has_manifest: bool,
    /// The module's size in bytes.
    pub size: u64,
    /// The initial size of the exported memory, in pages.
    pub memory_min_pages: u64,
    /// The first import whose result depends on the moment or on state (e.g.
    /// `kith.now_ms`), if any: such a function cannot be verified by redundant
    /// execution.
    pub nondeterministic: Option<String>,
    /// How the node calls it: kith's own ABI, or a WASI command.
    pub kind: ModuleKind,
}

/// How a function is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleKind {
    /// kith's own ABI: `kith_alloc`, then `kith_call` with the input (`docs/abi.md`).
    Native,
    /// A WASI preview 1 command: `_start`, stdin in, stdout out (`crate::wasi`).
    Wasi,
}

/// Why a module was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModuleError {
    /// Larger than the node's module size cap.
    #[error("module is {size} bytes, the limit is {limit} bytes (max_module_bytes)")]
    TooLarge {
        /// The module's size.
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// Does not start with the WebAssembly magic and version.
    #[error("not a WebAssembly module: {0}")]
    NotWasm(&'static str),
    /// The WebAssembly validator refused it (this covers truncation).
    #[error("invalid WebAssembly: {0}")]
    Invalid(String),
    /// It uses a WebAssembly feature kith does not accept.
    #[error(
        "the module uses {feature}, a WebAssembly feature kith does not accept ({detail}); accepted: {accepted} (docs/abi.md, section 5)"
    )]
    Feature {
        /// The feature.
        feature: &'static str,
        /// The validator's words.
        detail: String,
        /// The accepted features.
        accepted: String,
    },
    /// Over a structural limit.
    #[error("the module has {found} {what}, the limit is {max} ({limit})")]
    Structure {
        /// The limit's name.
        limit: &'static str,
        /// What was counted.
        what: &'static str,
        /// How many the module has.
        found: u64,
        /// The limit.
        max: u64,
    },
    /// More than one memory.
    #[error(
        "the module defines {0} memories; a kith function has exactly one (multi-memory is not accepted)"
    )]
    Memories(u64),
    /// A table starts larger than the manifest allows.
    #[error(
        "table {index} starts with {initial} elements, above its manifest's table_elements = {limit}"
    )]
    TableAboveLimit {
        /// The table's index.
        index: usize,
        /// Its initial size.
        initial: u64,
        /// The manifest's `table_elements`.
        limit: u64,
    },
    /// A required export is missing.
    #[error(
        "missing export `{name}` ({what}), required by the kith ABI (a WASI command exports `_start` instead of `kith_alloc` and `kith_call`)"
    )]
    MissingExport {
        /// The export's name.
        name: &'static str,
        /// What it must be.
        what: &'static str,
    },
    /// An export or import has the wrong kind or signature.
    #[error("`{name}` has signature {found}, the kith ABI requires {expected}")]
    WrongSignature {
        /// The item's name.
        name: String,
        /// What it has.
        found: String,
        /// What the ABI requires.
        expected: String,
    },
    /// An import the host does not provide.
    #[error(
        "import `{module}.{name}` is not provided by the kith ABI (allowed: functions from module `kith`: output, error, log, now_ms; with ABI 2 also state_get, state_put, state_delete, state_increment, state_append, result; and the functions of WASI preview 1, module `wasi_snapshot_preview1`)"
    )]
    UnknownImport {
        /// The import's module.
        module: String,
        /// The import's name.
        name: String,
    },
    /// An export name the host reserves for itself.
    #[error("export `{0}` uses the reserved prefix `wasmer_`")]
    ReservedExport(String),
    /// The memory is not a plain 32-bit, unshared memory.
    #[error("memory `memory` must be a 32-bit unshared memory")]
    UnsupportedMemory,
    /// The module's initial memory is above its own manifest's ceiling.
    #[error(
        "the module's initial memory is {min_bytes} bytes, above its manifest's memory_bytes = {limit}"
    )]
    MemoryBelowMinimum {
        /// The initial memory, in bytes.
        min_bytes: u64,
        /// The manifest ceiling.
        limit: u64,
    },
    /// The module imports a host function its manifest's ABI version lacks.
    #[error(
        "import `kith.{import}` needs ABI version {needs}, but the manifest says \"abi\": {declared}; set \"abi\": {needs}"
    )]
    ImportNeedsAbi {
        /// The import.
        import: String,
        /// The version that introduced it.
        needs: u32,
        /// The version the manifest declares.
        declared: u32,
    },
    /// The manifest asks for `verify` but the function is not deterministic.
    #[error(
        "the manifest asks for \"verify\": {verify}, but the module imports `{import}`, whose result depends on the moment or on state: honest peers would disagree (only deterministic functions can be verified)"
    )]
    NotDeterministic {
        /// The manifest's `verify`.
        verify: u8,
        /// The import.
        import: String,
    },
    /// The manifest is malformed or asks for something unsupported.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// Validates `bytes` as a kith function module, refusing anything above `max_bytes`.
///
/// # Errors
/// Fails with the first problem found; see [`ModuleError`].
pub fn inspect(bytes: &[u8], max_bytes: u64) -> Result<ModuleInfo, ModuleError> {
    let size = bytes.len() as u64;
    if size > max_bytes {
        return Err(ModuleError::TooLarge {
            size,
            limit: max_bytes,
        });
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(ModuleError::NotWasm("missing the `\\0asm` magic number"));
    }
    if bytes[4..8] != [1, 0, 0, 0] {
        return Err(ModuleError::NotWasm(
            "not a core module of binary format version 1 (components are not supported)",
        ));
    }
    let shape = structure::check(bytes)?;
    let mut validator = Validator::new_with_features(features::accepted());
    if let Err(e) = validator.validate_all(bytes) {
        return Err(match features::needed(bytes) {
            Some(feature) => ModuleError::Feature {
                feature,
                detail: e.message().to_owned(),
                accepted: features::accepted_names(),
            },
            None => ModuleError::Invalid(e.to_string()),
        });
    }
    let info = Scan::default().run(bytes)?;
    for (index, initial) in shape.table_minimums.iter().enumerate() {
        if *initial > info.manifest.table_elements {
            return Err(ModuleError::TableAboveLimit {
                index,
                initial: *initial,
                limit: info.manifest.table_elements,
            });
        }
    }
    Ok(info)
}

#[derive(Default)]
struct Scan {
    types: Vec<Option<FuncType>>,
    /// Type index of every function, imported ones first.
    funcs: Vec<u32>,
    /// Memory index -> (initial pages, is 32-bit unshared).
    memories: Vec<(u64, bool)>,
    alloc: Option<(ExternalKind, u32)>,
    call: Option<(ExternalKind, u32)>,
    memory: Option<(ExternalKind, u32)>,
    manifests: Vec<Vec<u8>>,
    /// The first imported state function, if any.
    state_import: Option<String>,
    /// The first import that is not deterministic, if any.
    nondeterministic: Option<String>,
    /// The WASI entry point, if exported.
    start: Option<(ExternalKind, u32)>,
}

impl Scan {
    fn run(mut self, bytes: &[u8]) -> Result<ModuleInfo, ModuleError> {
        let invalid = |e: wasmparser::BinaryReaderError| ModuleError::Invalid(e.to_string());
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.map_err(invalid)? {
                Payload::TypeSection(reader) => {
                    for group in reader {
                        for sub in group.map_err(invalid)?.into_types() {
                            self.types.push(match sub.composite_type.inner {
                                CompositeInnerType::Func(f) => Some(f),
                                _ => None,
                            });
                        }
                    }
                }
                Payload::ImportSection(reader) => {
                    for import in reader.into_imports() {
                        let import = import.map_err(invalid)?;
                        self.import(import.module, import.name, import.ty)?;
                    }
                }
                Payload::FunctionSection(reader) => {
                    for ty in reader {
                        self.funcs.push(ty.map_err(invalid)?);
                    }
                }
                Payload::MemorySection(reader) => {
                    for mem in reader {
                        let mem = mem.map_err(invalid)?;
                        self.memories
                            .push((mem.initial, !mem.memory64 && !mem.shared));
                    }
                }
                Payload::ExportSection(reader) => {
                    for export in reader {
                        let export = export.map_err(invalid)?;
                        if export.name.starts_with(abi::RESERVED_EXPORT_PREFIX) {
                            return Err(ModuleError::ReservedExport(export.name.to_owned()));
                        }
                        let slot = match export.name {
                            abi::EXPORT_ALLOC => &mut self.alloc,
                            abi::EXPORT_CALL => &mut self.call,
                            abi::EXPORT_MEMORY => &mut self.memory,
                            crate::wasi::EXPORT_START => &mut self.start,
                            _ => continue,
                        };
                        *slot = Some((export.kind, export.index));
                    }
                }
                Payload::CustomSection(section) if section.name() == abi::MANIFEST_SECTION => {
                    self.manifests.push(section.data().to_vec());
                }
                _ => {}
            }
        }
        self.finish(bytes.len() as u64)
    }

    fn import(&mut self, module: &str, name: &str, ty: TypeRef) -> Result<(), ModuleError> {
        let unknown = || ModuleError::UnknownImport {
            module: module.to_owned(),
            name: name.to_owned(),
        };
        let TypeRef::Func(index) = ty else {
            return Err(unknown());
        };
        if module == crate::wasi::MODULE {
            let expected = crate::wasi::signature(name).ok_or_else(unknown)?;
            self.check_signature(&format!("{module}.{name}"), index, expected)?;
            if self.nondeterministic.is_none() && crate::wasi::NONDETERMINISTIC.contains(&name) {
                self.nondeterministic = Some(format!("{module}.{name}"));
            }
            self.funcs.push(index);
            return Ok(());
        }
        if module != abi::IMPORT_MODULE {
            return Err(unknown());
        }
        let Some((_, expected)) = abi::HOST_FUNCTIONS.iter().find(|(n, _)| *n == name) else {
            return Err(unknown());
        };
        self.check_signature(&format!("kith.{name}"), index, expected)?;
        if self.state_import.is_none() && abi::STATE_FUNCTIONS.contains(&name) {
            self.state_import = Some(name.to_owned());
        }
        if self.nondeterministic.is_none() && abi::NONDETERMINISTIC.contains(&name) {
            self.nondeterministic = Some(format!("{module}.{name}"));
        }
        self.funcs.push(index);
        Ok(())
    }

    fn check_signature(
        &self,
        name: &str,
        type_index: u32,
        expected: &Signature,
    ) -> Result<(), ModuleError> {
        let found = self.types.get(type_index as usize).and_then(Option::as_ref);
        let matches = found.is_some_and(|f| {
            same(f.params(), expected.params) && same(f.results(), expected.results)
        });
        if matches {
            return Ok(());
        }
        Err(ModuleError::WrongSignature {
            name: name.to_owned(),
            found: found.map_or_else(|| "(not a function type)".to_owned(), describe),
            expected: expected.to_string(),
        })
    }

    fn export_func(
        &self,
        export: Option<(ExternalKind, u32)>,
        name: &'static str,
        expected: &Signature,
    ) -> Result<(), ModuleError> {
        let Some((kind, index)) = export else {
            return Err(ModuleError::MissingExport {
                name,
                what: "a function",
            });
        };
        let type_index = match kind {
            ExternalKind::Func => self.funcs.get(index as usize).copied(),
            _ => None,
        };
        match type_index {
            Some(t) => self.check_signature(name, t, expected),
            None => Err(ModuleError::WrongSignature {
                name: name.to_owned(),
                found: format!("{kind:?}").to_lowercase(),
                expected: expected.to_string(),
            }),
        }
    }

    fn finish(self, size: u64) -> Result<ModuleInfo, ModuleError> {
        let memory_min_pages = match self.memory {
            None => {
                return Err(ModuleError::MissingExport {
                    name: abi::EXPORT_MEMORY,
                    what: "a memory",
                });
            }
            Some((ExternalKind::Memory, index)) => match self.memories.get(index as usize) {
                Some((initial, true)) => *initial,
                _ => return Err(ModuleError::UnsupportedMemory),
            },
            Some((kind, _)) => {
                return Err(ModuleError::WrongSignature {
                    name: abi::EXPORT_MEMORY.to_owned(),
                    found: format!("{kind:?}").to_lowercase(),
                    expected: "a memory".to_owned(),
                });
            }
        };
        // kith's own ABI when it exports `kith_call`; a WASI command when it exports
        // `_start` instead.
        let kind = if self.call.is_none() && self.alloc.is_none() && self.start.is_some() {
            self.export_func(
                self.start,
                crate::wasi::EXPORT_START,
                &crate::wasi::START_SIGNATURE,
            )?;
            ModuleKind::Wasi
        } else {
            self.export_func(self.alloc, abi::EXPORT_ALLOC, &abi::ALLOC_SIGNATURE)?;
            self.export_func(self.call, abi::EXPORT_CALL, &abi::CALL_SIGNATURE)?;
            ModuleKind::Native
        };
        let (manifest, has_manifest) = match self.manifests.as_slice() {
            [] => (Manifest::default(), false),
            [one] => (Manifest::parse(one)?, true),
            many => return Err(ManifestError::Duplicate(many.len()).into()),
        };
        if let Some(import) = self.state_import
            && manifest.abi < abi::STATE_ABI_VERSION
        {
            return Err(ModuleError::ImportNeedsAbi {
                import,
                needs: abi::STATE_ABI_VERSION,
                declared: manifest.abi,
            });
        }
        if manifest.verify > 1
            && let Some(import) = &self.nondeterministic
        {
            return Err(ModuleError::NotDeterministic {
                verify: manifest.verify,
                import: import.clone(),
            });
        }
        let min_bytes = memory_min_pages.saturating_mul(WASM_PAGE);
        if min_bytes > manifest.memory_bytes {
            return Err(ModuleError::MemoryBelowMinimum {
                min_bytes,
                limit: manifest.memory_bytes,
            });
        }
        Ok(ModuleInfo {
            manifest,
            has_manifest,
            size,
            memory_min_pages,
            nondeterministic: self.nondeterministic,
            kind,
        })
    }
}

fn same(found: &[WValType], expected: &[ValType]) -> bool {
    found.len() == expected.len()
        && found.iter().zip(expected).all(|(f, e)| {
            matches!(
                (f, e),
                (WValType::I32, ValType::I32) | (WValType::I64, ValType::I64)
            )
        })
}

fn describe(f: &FuncType) -> String {
    let list = |v: &[WValType]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> ({})", list(f.params()), list(f.results()))
}
