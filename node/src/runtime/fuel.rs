//! Fuel: the compile-time instrumentation that meters every call, written for kith.
//!
//! Every operator costs one unit, charged at the end of its basic block (before each
//! branch, call, loop header or block end), as in any metering scheme. On top of
//! that, operations whose work depends on an operand are charged in proportion to it,
//! right before they run:
//!
//! | operation | charge |
//! |---|---|
//! | any of the below | [`BULK_BASE`] more (each is a call into the runtime) |
//! | `memory.fill`, `memory.copy`, `memory.init` | one unit per [`BYTES_PER_FUEL`] bytes of length |
//! | `memory.grow` | [`FUEL_PER_PAGE`] per page added (the kernel maps and zeroes each one as it is touched), if it succeeds |
//! | `table.fill`, `table.copy`, `table.init` | [`FUEL_PER_ELEMENT`] per element |
//! | `table.grow` | [`FUEL_PER_ELEMENT`] per element added, if it succeeds |
//!
//! so a loop of cheap-looking bulk operations cannot take far more CPU than its fuel
//! suggests. The numbers come from measuring fuel per CPU-millisecond of each kind
//! beside plain arithmetic (`docs/benchmarks.md` (j)): each is charged at least what
//! its CPU time would cost as arithmetic, on the machine measured.
//!
//! A grow is charged after it succeeded: a refused grow does no work, and must end as
//! the memory or table limit it hit, not as fuel spent on a size it never got.
//!
//! The instrumentation adds five globals to every module: the remaining fuel (`i64`,
//! compared unsigned), an "exhausted" flag set just before the trap, two scratch
//! slots, and a flag set when `table.grow` was refused (so the runtime can name the
//! table limit). It also takes the module's start function out of instantiation and
//! exports it as [`START_EXPORT`], so the runtime runs it like any other guest code:
//! under the call's fuel, memory limit and watchdog.

use std::sync::Mutex;

use wasmer::sys::{FunctionMiddleware, MiddlewareError, MiddlewareReaderState, ModuleMiddleware};
use wasmer::wasmparser::{BlockType, Operator};
use wasmer::{
    ExportIndex, GlobalInit, GlobalType, LocalFunctionIndex, ModuleInfo, Mutability, Type,
};
use wasmer_types::GlobalIndex;

/// Export naming the remaining-fuel global.
pub(crate) const FUEL_EXPORT: &str = "wasmer_kith_fuel";
/// Export naming the flag set when fuel ran out.
pub(crate) const EXHAUSTED_EXPORT: &str = "wasmer_kith_fuel_exhausted";
/// Export naming the flag set when a `table.grow` was refused.
pub(crate) const TABLE_REFUSED_EXPORT: &str = "wasmer_kith_table_refused";
/// Export naming the module's start function, which the runtime calls itself.
pub(crate) const START_EXPORT: &str = "wasmer_kith_start";

pub(crate) use kith_protocol::limits::costs::{
    BULK_BASE, BYTES_PER_FUEL, FUEL_PER_ELEMENT, FUEL_PER_PAGE,
};

/// The global indexes the instrumentation uses.
#[derive(Debug, Clone, Copy)]
struct Globals {
    remaining: u32,
    exhausted: u32,
    scratch: u32,
    result: u32,
    table_refused: u32,
}

/// The middleware, one per module (it records that module's global indexes).
#[derive(Debug, Default)]
pub(crate) struct Fuel {
    globals: Mutex<Option<Globals>>,
}

impl Fuel {
    fn globals(&self) -> Option<Globals> {
        *self
            .globals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn add_global(info: &mut ModuleInfo, ty: Type, init: GlobalInit) -> u32 {
    let index = info.globals.push(GlobalType::new(ty, Mutability::Var));
    info.global_initializers.push(init);
    index.as_u32()
}

impl ModuleMiddleware for Fuel {
    fn generate_function_middleware<'a>(
        &self,
        _: LocalFunctionIndex,
    ) -> Box<dyn FunctionMiddleware<'a> + 'a> {
        Box::new(FunctionFuel {
            globals: self.globals(),
            pending: 0,
        })
    }

    fn transform_module_info(&self, info: &mut ModuleInfo) -> Result<(), MiddlewareError> {
        let mut slot = self
            .globals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_some() {
            return Err(MiddlewareError::new(
                "kith fuel",
                "one fuel middleware instruments one module",
            ));
        }
        let globals = Globals {
            // No guest code runs during instantiation any more (see below), so a fresh
            // instance starts with no fuel; the runtime sets the call's budget.
            remaining: add_global(info, Type::I64, GlobalInit::I64Const(0)),
            exhausted: add_global(info, Type::I32, GlobalInit::I32Const(0)),
            scratch: add_global(info, Type::I32, GlobalInit::I32Const(0)),
            result: add_global(info, Type::I32, GlobalInit::I32Const(0)),
            table_refused: add_global(info, Type::I32, GlobalInit::I32Const(0)),
        };
        for (name, index) in [
            (FUEL_EXPORT, globals.remaining),
            (EXHAUSTED_EXPORT, globals.exhausted),
            (TABLE_REFUSED_EXPORT, globals.table_refused),
        ] {
            info.exports.insert(
                name.to_owned(),
                ExportIndex::Global(GlobalIndex::from_u32(index)),
            );
        }
        if let Some(start) = info.start_function.take() {
            info.exports
                .insert(START_EXPORT.to_owned(), ExportIndex::Function(start));
        }
        *slot = Some(globals);
        Ok(())
    }
}

/// The instrumentation of one function body.
#[derive(Debug)]
struct FunctionFuel {
    globals: Option<Globals>,
    /// Static cost of the operators since the last check.
    pending: u64,
}

/// How a dynamically charged operation's top operand (an `i32`) turns into fuel:
/// `operand * mul / div`.
#[derive(Debug, Clone, Copy)]
struct Rate {
    mul: u64,
    div: u64,
}

const PER_BYTE: Rate = Rate {
    mul: 1,
    div: BYTES_PER_FUEL,
};
const PER_ELEMENT: Rate = Rate {
    mul: FUEL_PER_ELEMENT,
    div: 1,
};
const PER_PAGE: Rate = Rate {
    mul: FUEL_PER_PAGE,
    div: 1,
};

/// The charge an operator's top operand incurs, if it has one.
fn rate(op: &Operator) -> Option<Rate> {
    match op {
        Operator::MemoryFill { .. } | Operator::MemoryCopy { .. } | Operator::MemoryInit { .. } => {
            Some(PER_BYTE)
        }
        Operator::MemoryGrow { .. } => Some(PER_PAGE),
        Operator::TableFill { .. }
        | Operator::TableCopy { .. }
        | Operator::TableInit { .. }
        | Operator::TableGrow { .. } => Some(PER_ELEMENT),
        _ => None,
    }
}

/// True for the operators that end a basic block: branch sources and targets.
fn ends_block(op: &Operator) -> bool {
    matches!(
        op,
        Operator::Loop { .. }
            | Operator::End
            | Operator::If { .. }
            | Operator::Else
            | Operator::Br { .. }
            | Operator::BrIf { .. }
            | Operator::BrTable { .. }
            | Operator::Call { .. }
            | Operator::CallIndirect { .. }
            | Operator::Return
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::Throw { .. }
            | Operator::ThrowRef
            | Operator::Rethrow { .. }
            | Operator::Delegate { .. }
            | Operator::Catch { .. }
            | Operator::CatchAll
            | Operator::TryTable { .. }
            | Operator::CallRef { .. }
            | Operator::ReturnCallRef { .. }
            | Operator::BrOnNull { .. }
            | Operator::BrOnNonNull { .. }
            | Operator::BrOnCast { .. }
            | Operator::BrOnCastFail { .. }
    )
}

impl FunctionFuel {
    /// `if remaining < cost { exhausted = 1; trap }; remaining -= cost`, with the cost
    /// pushed by `cost` (an `i64`; emitted twice).
    fn charge<'a>(
        g: Globals,
        state: &mut MiddlewareReaderState<'a>,
        cost: &dyn Fn(&mut MiddlewareReaderState<'a>),
    ) {
        state.push_operator(Operator::GlobalGet {
            global_index: g.remaining,
        });
        cost(state);
        state.extend([
            Operator::I64LtU,
            Operator::If {
                blockty: BlockType::Empty,
            },
            Operator::I32Const { value: 1 },
            Operator::GlobalSet {
                global_index: g.exhausted,
            },
            Operator::Unreachable,
            Operator::End,
            Operator::GlobalGet {
                global_index: g.remaining,
            },
        ]);
        cost(state);
        state.extend([
            Operator::I64Sub,
            Operator::GlobalSet {
                global_index: g.remaining,
            },
        ]);
    }

    fn flush(&mut self, g: Globals, state: &mut MiddlewareReaderState<'_>) {
        if self.pending == 0 {
            return;
        }
        // At most a function body's worth of operators: far below i64::MAX.
        let value = i64::try_from(self.pending).unwrap_or(i64::MAX);
        Self::charge(g, state, &|s| s.push_operator(Operator::I64Const { value }));
        self.pending = 0;
    }

    /// Pushes the fuel the `i32` in `scratch` costs at `rate`, as an `i64`.
    fn cost_of_scratch(g: Globals, rate: Rate, s: &mut MiddlewareReaderState<'_>) {
        s.extend([
            Operator::GlobalGet {
                global_index: g.scratch,
            },
            Operator::I64ExtendI32U,
        ]);
        if rate.mul != 1 {
            s.extend([
                Operator::I64Const {
                    value: rate.mul as i64,
                },
                Operator::I64Mul,
            ]);
        }
        if rate.div != 1 {
            s.extend([
                Operator::I64Const {
                    value: rate.div as i64,
                },
                Operator::I64DivU,
            ]);
        }
    }

    /// Copies the `i32` on top of the stack to `scratch`, leaving the stack as it was.
    fn save_operand(g: Globals, state: &mut MiddlewareReaderState<'_>) {
        state.extend([
            Operator::GlobalSet {
                global_index: g.scratch,
            },
            Operator::GlobalGet {
                global_index: g.scratch,
            },
        ]);
    }

    /// After a grow (its result, an `i32`, on top; its delta in `scratch`): charges
    /// the delta if it succeeded, sets `refused` (if given) if it returned -1, and
    /// leaves the stack as it was.
    fn after_grow(
        g: Globals,
        rate: Rate,
        refused: Option<u32>,
        state: &mut MiddlewareReaderState<'_>,
    ) {
        state.extend([
            Operator::GlobalSet {
                global_index: g.result,
            },
            Operator::GlobalGet {
                global_index: g.result,
            },
            Operator::I32Const { value: -1 },
            Operator::I32Eq,
            Operator::If {
                blockty: BlockType::Empty,
            },
        ]);
        if let Some(flag) = refused {
            state.extend([
                Operator::I32Const { value: 1 },
                Operator::GlobalSet { global_index: flag },
            ]);
        }
        state.push_operator(Operator::Else);
        Self::charge(g, state, &|s| Self::cost_of_scratch(g, rate, s));
        state.extend([
            Operator::End,
            Operator::GlobalGet {
                global_index: g.result,
            },
        ]);
    }
}

impl<'a> FunctionMiddleware<'a> for FunctionFuel {
    fn feed(
        &mut self,
        operator: Operator<'a>,
        state: &mut MiddlewareReaderState<'a>,
    ) -> Result<(), MiddlewareError> {
        let Some(g) = self.globals else {
            return Err(MiddlewareError::new(
                "kith fuel",
                "function instrumented before its module",
            ));
        };
        // The operator's own cost counts in the block it ends, so a call or a branch
        // can never run before it is paid for.
        self.pending += 1;
        if let Some(rate) = rate(&operator) {
            self.pending += BULK_BASE;
            self.flush(g, state);
            Self::save_operand(g, state);
            let refused = match operator {
                Operator::TableGrow { .. } => Some(Some(g.table_refused)),
                Operator::MemoryGrow { .. } => Some(None),
                _ => None,
            };
            match refused {
                None => {
                    Self::charge(g, state, &|s| Self::cost_of_scratch(g, rate, s));
                    state.push_operator(operator);
                }
                Some(flag) => {
                    state.push_operator(operator);
                    Self::after_grow(g, rate, flag, state);
                }
            }
            return Ok(());
        }
        if ends_block(&operator) {
            self.flush(g, state);
        }
        state.push_operator(operator);
        Ok(())
    }
}

/// An instrumented global's value, if the instance has it.
fn global(store: &mut wasmer::Store, instance: &wasmer::Instance, name: &str) -> Option<i64> {
    match instance.exports.get_global(name).ok()?.get(store) {
        wasmer::Value::I64(v) => Some(v),
        wasmer::Value::I32(v) => Some(i64::from(v)),
        _ => None,
    }
}

/// Fuel left in `instance`, or `None` once it ran out.
pub(crate) fn remaining(store: &mut wasmer::Store, instance: &wasmer::Instance) -> Option<u64> {
    if global(store, instance, EXHAUSTED_EXPORT)? != 0 {
        return None;
    }
    // The counter is compared unsigned, as the instrumentation does.
    global(store, instance, FUEL_EXPORT).map(|v| v as u64)
}

/// Gives `instance` `fuel` units. `None` if it is not instrumented.
pub(crate) fn set_remaining(
    store: &mut wasmer::Store,
    instance: &wasmer::Instance,
    fuel: u64,
) -> Option<()> {
    let value = wasmer::Value::I64(fuel as i64);
    instance
        .exports
        .get_global(FUEL_EXPORT)
        .ok()?
        .set(store, value)
        .ok()?;
    instance
        .exports
        .get_global(EXHAUSTED_EXPORT)
        .ok()?
        .set(store, wasmer::Value::I32(0))
        .ok()
}

/// True if and only if a `table.grow` in `instance` was refused.
pub(crate) fn table_refused(store: &mut wasmer::Store, instance: &wasmer::Instance) -> bool {
    global(store, instance, TABLE_REFUSED_EXPORT).is_some_and(|v| v != 0)
}
