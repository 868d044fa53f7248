//! The one wasmer engine: cranelift, fuel metering, and memories that do not reserve
//! address space up front.

use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::Arc;

use wasmer::sys::vm::{
    LinearMemory, MemoryError, MemoryStyle, Trap, VMConfig, VMMemory, VMMemoryDefinition,
    VMSharedMemory, VMTable, VMTableDefinition,
};
use wasmer::sys::{
    BaseTunables, CompilerConfig, Cranelift, EngineBuilder, NativeEngineExt, Tunables,
};
use wasmer::wasmparser::Operator;
use wasmer::{Engine, MemoryType, Pages, TableStyle, TableType};
use wasmer_middlewares::Metering;

/// Bumped whenever anything that shapes compiled code changes (cost function, memory
/// style, guard size), so stale cached artifacts are never loaded.
const CODEGEN_REVISION: u32 = 1;

/// Bytes of guard region after each dynamic memory. Small on purpose: a Pi or a qemu
/// user-mode process cannot afford gigabytes of reserved address space per instance.
const OFFSET_GUARD_BYTES: u64 = 64 * 1024;

/// Guest stack size, in bytes.
pub(crate) const WASM_STACK_BYTES: usize = 1024 * 1024;

/// Cost of one operator, in fuel units. Every operator costs one unit.
fn cost(_op: &Operator) -> u64 {
    1
}

/// Builds an engine. `initial_fuel` bounds a module's start function.
///
/// wasmer's metering middleware records per-module state, so every module is compiled
/// (or deserialized) by an engine of its own; all of them share one configuration, which
/// [`tag`] names.
pub(crate) fn build(initial_fuel: u64) -> Engine {
    let mut compiler = Cranelift::default();
    compiler.push_middleware(Arc::new(Metering::new(initial_fuel, cost)));
    let mut engine: Engine = EngineBuilder::new(compiler).engine().into();
    engine.set_tunables(Limiting::new(Pages(0)));
    engine
}

/// A tag naming everything that makes a compiled artifact loadable by this engine:
/// the wasmer version, compiler, target triple and CPU features, and our codegen
/// revision. Part of every cached artifact's file name.
pub(crate) fn tag(engine: &Engine) -> String {
    let target = engine.target();
    let text = format!(
        "wasmer=7.4.2 compiler={} triple={} cpu={:?} kith-codegen={CODEGEN_REVISION} guard={OFFSET_GUARD_BYTES}",
        engine.deterministic_id(),
        target.triple(),
        target.cpu_features(),
    );
    blake3::hash(text.as_bytes()).to_hex()[..16].to_owned()
}

/// An engine for one module whose memories are capped at `max_pages`.
pub(crate) fn for_module(initial_fuel: u64, max_pages: u32) -> Engine {
    let mut engine = build(initial_fuel);
    engine.set_tunables(Limiting::new(Pages(max_pages)));
    engine
}

thread_local! {
    /// Set when a guest's `memory.grow` is refused because of its ceiling, on the
    /// thread running the guest; read and cleared by the runtime around each call.
    static GROW_REFUSED: Cell<bool> = const { Cell::new(false) };
}

/// Clears the flag; returns whether a grow was refused since the last call.
pub(crate) fn take_grow_refused() -> bool {
    GROW_REFUSED.with(|c| c.replace(false))
}

/// Tunables that use dynamic (bounds-checked) memories with a small guard and cap
/// every memory's maximum.
struct Limiting {
    base: BaseTunables,
    max_pages: Pages,
    config: VMConfig,
}

impl Limiting {
    fn new(max_pages: Pages) -> Self {
        Self {
            base: BaseTunables::new(),
            max_pages,
            config: VMConfig {
                wasm_stack_size: Some(WASM_STACK_BYTES),
            },
        }
    }

    fn capped(&self, ty: &MemoryType) -> Result<MemoryType, MemoryError> {
        if ty.minimum > self.max_pages {
            return Err(MemoryError::MinimumMemoryTooLarge {
                min_requested: ty.minimum,
                max_allowed: self.max_pages,
            });
        }
        let mut ty = *ty;
        ty.maximum = Some(ty.maximum.map_or(self.max_pages, |m| m.min(self.max_pages)));
        Ok(ty)
    }
}

impl Tunables for Limiting {
    fn memory_style(&self, _memory: &MemoryType) -> MemoryStyle {
        MemoryStyle::Dynamic {
            offset_guard_size: OFFSET_GUARD_BYTES,
        }
    }

    fn table_style(&self, table: &TableType) -> TableStyle {
        self.base.table_style(table)
    }

    fn create_host_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
    ) -> Result<VMMemory, MemoryError> {
        let ty = self.capped(ty)?;
        Ok(Watched::wrap(self.base.create_host_memory(&ty, style)?))
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        let ty = self.capped(ty)?;
        // SAFETY: forwarded unchanged from the caller's contract.
        let memory = unsafe {
            self.base
                .create_vm_memory(&ty, style, vm_definition_location)?
        };
        Ok(Watched::wrap(memory))
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        self.base.create_host_table(ty, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        // SAFETY: forwarded unchanged from the caller's contract.
        unsafe { self.base.create_vm_table(ty, style, vm_definition_location) }
    }

    fn vmconfig(&self) -> &VMConfig {
        &self.config
    }
}

/// A memory that notes, on the running thread, when a grow is refused.
#[derive(Debug)]
struct Watched(VMMemory);

impl Watched {
    fn wrap(memory: VMMemory) -> VMMemory {
        VMMemory(Box::new(Watched(memory)))
    }
}

impl LinearMemory for Watched {
    fn ty(&self) -> MemoryType {
        self.0.ty()
    }
    fn size(&self) -> Pages {
        self.0.size()
    }
    fn style(&self) -> MemoryStyle {
        self.0.style()
    }
    fn grow(&mut self, delta: Pages) -> Result<Pages, MemoryError> {
        let result = self.0.grow(delta);
        if result.is_err() {
            GROW_REFUSED.with(|c| c.set(true));
        }
        result
    }
    fn grow_at_least(&mut self, min_size: u64) -> Result<(), MemoryError> {
        let result = self.0.grow_at_least(min_size);
        if result.is_err() {
            GROW_REFUSED.with(|c| c.set(true));
        }
        result
    }
    fn reset(&mut self) -> Result<(), MemoryError> {
        self.0.reset()
    }
    fn vmmemory(&self) -> NonNull<VMMemoryDefinition> {
        self.0.vmmemory()
    }
    fn try_clone(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        LinearMemory::try_clone(&self.0)
    }
    unsafe fn initialize_with_data(&self, start: usize, data: &[u8]) -> Result<(), Trap> {
        // SAFETY: forwarded unchanged from the caller's contract.
        unsafe { self.0.initialize_with_data(start, data) }
    }
    fn copy(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        LinearMemory::copy(&self.0)
    }
    fn as_shared(&self) -> Result<VMSharedMemory, MemoryError> {
        self.0.as_shared()
    }
}
