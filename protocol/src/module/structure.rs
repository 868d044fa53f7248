//! Structural limits: what bounds the work of validating and compiling a module, and
//! what its instances may declare, checked before the validator or the compiler sees
//! it. They are constants of the protocol, the same on every node, so a module one
//! node accepts every node accepts (`docs/abi.md`, section 5.2).
//!
//! The section headers give most counts before anything large is read; code bodies
//! are read once more for their locals and their nesting depth.

use wasmparser::{Operator, Parser, Payload};

use super::ModuleError;

/// The structural limits, each named in its refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Functions, imported and defined.
    pub max_functions: u64,
    /// Bytes of one function body.
    pub max_function_body_bytes: u64,
    /// Locals of one function, parameters excluded.
    pub max_locals: u64,
    /// Blocks, loops and ifs open at once in one function.
    pub max_nesting_depth: u64,
    /// Types in the type section.
    pub max_types: u64,
    /// Parameters, or results, of one function type.
    pub max_type_arity: u64,
    /// Parameters and results of all function types together (the compiler makes a
    /// trampoline for every type, and its work grows with this sum).
    pub max_type_values: u64,
    /// Imports.
    pub max_imports: u64,
    /// Exports.
    pub max_exports: u64,
    /// Globals defined.
    pub max_globals: u64,
    /// Tables defined.
    pub max_tables: u64,
    /// Memories defined.
    pub max_memories: u64,
    /// Data segments.
    pub max_data_segments: u64,
    /// Element segments.
    pub max_element_segments: u64,
    /// Items of all element segments together.
    pub max_element_items: u64,
}

/// The limits every node applies.
pub const LIMITS: Limits = Limits {
    max_functions: 100_000,
    max_function_body_bytes: 256 * 1024,
    max_locals: 20_000,
    max_nesting_depth: 1_000,
    max_types: 10_000,
    max_type_arity: 1_000,
    max_type_values: 50_000,
    max_imports: 1_000,
    max_exports: 10_000,
    max_globals: 10_000,
    max_tables: 4,
    max_memories: 1,
    max_data_segments: 100_000,
    max_element_segments: 10_000,
    max_element_items: 100_000,
};

/// What the structure told us, for the checks that need the manifest too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    /// The initial size of every table the module defines, in elements.
    pub table_minimums: Vec<u64>,
}

fn over(limit: &'static str, what: &'static str, found: u64, max: u64) -> Result<(), ModuleError> {
    if found > max {
        return Err(ModuleError::Structure {
            limit,
            what,
            found,
            max,
        });
    }
    Ok(())
}

fn invalid(e: wasmparser::BinaryReaderError) -> ModuleError {
    ModuleError::Invalid(e.to_string())
}

/// Checks `bytes` against [`LIMITS`].
///
/// # Errors
/// [`ModuleError::Structure`] naming the first limit exceeded, or
/// [`ModuleError::Invalid`] when the bytes do not parse.
pub fn check(bytes: &[u8]) -> Result<Shape, ModuleError> {
    let l = &LIMITS;
    let mut shape = Shape::default();
    let mut functions: u64 = 0;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            Payload::TypeSection(reader) => {
                let mut types: u64 = 0;
                let mut values: u64 = 0;
                for group in reader {
                    for sub in group.map_err(invalid)?.into_types() {
                        types += 1;
                        over("max_types", "types", types, l.max_types)?;
                        if let wasmparser::CompositeInnerType::Func(f) = &sub.composite_type.inner {
                            let arity = f.params().len().max(f.results().len()) as u64;
                            over(
                                "max_type_arity",
                                "parameters or results in one function type",
                                arity,
                                l.max_type_arity,
                            )?;
                            values += (f.params().len() + f.results().len()) as u64;
                            over(
                                "max_type_values",
                                "parameters and results in all function types",
                                values,
                                l.max_type_values,
                            )?;
                        }
                    }
                }
            }
            Payload::ImportSection(reader) => {
                let count = u64::from(reader.count());
                over("max_imports", "imports", count, l.max_imports)?;
                // Only function imports are allowed (the ABI check refuses the rest).
                functions += count;
            }
            Payload::FunctionSection(reader) => {
                functions += u64::from(reader.count());
                over("max_functions", "functions", functions, l.max_functions)?;
            }
            Payload::TableSection(reader) => {
                over(
                    "max_tables",
                    "tables",
                    u64::from(reader.count()),
                    l.max_tables,
                )?;
                for table in reader {
                    shape
                        .table_minimums
                        .push(table.map_err(invalid)?.ty.initial);
                }
            }
            Payload::MemorySection(reader) => {
                let count = u64::from(reader.count());
                if count > l.max_memories {
                    return Err(ModuleError::Memories(count));
                }
            }
            Payload::GlobalSection(reader) => over(
                "max_globals",
                "globals",
                u64::from(reader.count()),
                l.max_globals,
            )?,
            Payload::ExportSection(reader) => over(
                "max_exports",
                "exports",
                u64::from(reader.count()),
                l.max_exports,
            )?,
            Payload::ElementSection(reader) => {
                over(
                    "max_element_segments",
                    "element segments",
                    u64::from(reader.count()),
                    l.max_element_segments,
                )?;
                // Every instance gets its own copy of every passive segment's items
                // (8 bytes each), before any guest code runs: they are counted here.
                let mut items: u64 = 0;
                for element in reader {
                    let count = match element.map_err(invalid)?.items {
                        wasmparser::ElementItems::Functions(f) => f.count(),
                        wasmparser::ElementItems::Expressions(_, e) => e.count(),
                    };
                    items += u64::from(count);
                    over(
                        "max_element_items",
                        "items in all element segments",
                        items,
                        l.max_element_items,
                    )?;
                }
            }
            Payload::DataSection(reader) => over(
                "max_data_segments",
                "data segments",
                u64::from(reader.count()),
                l.max_data_segments,
            )?,
            Payload::CodeSectionEntry(body) => function_body(&body)?,
            _ => {}
        }
    }
    Ok(shape)
}

fn function_body(body: &wasmparser::FunctionBody<'_>) -> Result<(), ModuleError> {
    let l = &LIMITS;
    let range = body.range();
    over(
        "max_function_body_bytes",
        "bytes in one function body",
        range.end - range.start,
        l.max_function_body_bytes,
    )?;
    let mut locals: u64 = 0;
    for group in body.get_locals_reader().map_err(invalid)? {
        let (count, _) = group.map_err(invalid)?;
        locals = locals.saturating_add(u64::from(count));
        over("max_locals", "locals in one function", locals, l.max_locals)?;
    }
    let mut depth: u64 = 0;
    let mut reader = body.get_operators_reader().map_err(invalid)?;
    while !reader.eof() {
        match reader.read().map_err(invalid)? {
            Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::Try { .. }
            | Operator::TryTable { .. } => {
                depth += 1;
                over(
                    "max_nesting_depth",
                    "blocks open at once in one function",
                    depth,
                    l.max_nesting_depth,
                )?;
            }
            Operator::End => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}
