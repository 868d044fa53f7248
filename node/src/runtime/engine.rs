//! The one wasmer engine configuration: cranelift on one thread, kith's fuel
//! instrumentation ([`super::fuel`]), exactly the WebAssembly features kith accepts,
//! memories that do not reserve address space up front, and caps on every memory and
//! table an instance creates.

use std::cell::{Cell, UnsafeCell};
use std::ptr::NonNull;
use std::sync::Arc;

#[cfg(not(feature = "singlepass"))]
use wasmer::sys::Cranelift;
use wasmer::sys::vm::{
    InternalStoreHandle, LinearMemory, MaybeInstanceOwned, MemoryError, MemoryStyle, Mmap,
    MmapType, StoreObjects, VMConfig, VMGlobal, VMGlobalDefinition, VMMemory, VMMemoryDefinition,
    VMTable, VMTableDefinition,
};
use wasmer::sys::{BaseTunables, CompilerConfig, EngineBuilder, NativeEngineExt, Tunables};
use wasmer::{
    Engine, ExportIndex, MemoryType, ModuleInfo, Pages, TableStyle, TableType, WASM_PAGE_SIZE,
};
use wasmer_compiler::LinkError;
use wasmer_types::LocalGlobalIndex;
use wasmer_types::entity::{EntityRef, PrimaryMap};

/// Bumped whenever anything that shapes compiled code changes (cost function, memory
/// style, guard size), so stale cached artifacts are never loaded.
const CODEGEN_REVISION: u32 = 4;

/// Bytes of guard region after each dynamic memory. Small on purpose: a Pi or a qemu
/// user-mode process cannot afford gigabytes of reserved address space per instance.
const OFFSET_GUARD_BYTES: u64 = 64 * 1024;

/// Guest stack size, in bytes.
pub(crate) const WASM_STACK_BYTES: usize = 1024 * 1024;

/// The WebAssembly features the compiler accepts: exactly the ones
/// `kith_protocol::module::features` lists as accepted (a module reaching the compiler
/// has already passed that validator; this is the second lock on the same door).
fn features() -> wasmer::sys::Features {
    let mut f = wasmer::sys::Features::new();
    f.threads = false;
    f.simd = false;
    f.relaxed_simd = false;
    f.multi_memory = false;
    f.memory64 = false;
    f.exceptions = false;
    f.tail_call = false;
    f.module_linking = false;
    f.wide_arithmetic = false;
    f.reference_types = true;
    f.bulk_memory = true;
    f.multi_value = true;
    f.extended_const = true;
    f
}

/// Builds an engine with nothing granted (no memory, no table elements).
///
/// The fuel instrumentation records per-module state, so every module is compiled (or
/// deserialized) by an engine of its own; all of them share one configuration, which
/// [`tag`] names.
pub(crate) fn build() -> Engine {
    #[cfg(feature = "singlepass")]
    let mut compiler = wasmer::sys::Singlepass::default();
    #[cfg(not(feature = "singlepass"))]
    let mut compiler = Cranelift::default();
    // One compile is one thread: the compile pool decides how many run at once.
    #[cfg(not(feature = "singlepass"))]
    compiler.num_threads(std::num::NonZero::<usize>::MIN);
    compiler.push_middleware(Arc::new(super::fuel::Fuel::default()));
    let mut engine: Engine = EngineBuilder::new(compiler)
        .set_features(Some(features()))
        .engine()
        .into();
    engine.set_tunables(Limiting::new(Pages(0), 0));
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

/// An engine for one module whose memories are capped at `max_pages` and each of
/// whose tables is capped at `max_table_elements`.
pub(crate) fn for_module(max_pages: u32, max_table_elements: u32) -> Engine {
    let mut engine = build();
    engine.set_tunables(Limiting::new(Pages(max_pages), max_table_elements));
    engine
}

/// A limit that refused something on the thread running a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A memory's initial size or a `memory.grow` was over the memory ceiling.
    Memory,
    /// A table's initial size was over the table ceiling.
    Table,
}

thread_local! {
    /// Set when a memory or table is refused because of its ceiling, on the thread
    /// running the guest; read and cleared by the runtime around each call.
    static REFUSED: Cell<Option<Refused>> = const { Cell::new(None) };
}

/// Clears the note; returns what was refused since the last call, if anything.
pub(crate) fn take_refused() -> Option<Refused> {
    REFUSED.with(Cell::take)
}

fn note_refused(what: Refused) {
    REFUSED.with(|c| c.set(Some(what)));
}

thread_local! {
    /// Where the instance created last on this thread keeps its remaining fuel; set
    /// while instantiating, taken by the runtime right after.
    static FUEL_GLOBAL: Cell<Option<NonNull<VMGlobalDefinition>>> = const { Cell::new(None) };
}

/// The remaining-fuel counter of one live instance, which another thread may drain.
///
/// This is how wall-clock limits are enforced: the watchdog sets the counter to zero,
/// and the guest's next metering check (at least once per loop iteration and function
/// entry) traps as out of fuel. Unlike a signal, this can never unwind the guest's
/// thread from the middle of host or runtime code.
#[derive(Debug)]
pub(crate) struct FuelCell(NonNull<VMGlobalDefinition>);

// SAFETY: the pointer is only dereferenced by `drain`, whose contract the owner upholds.
unsafe impl Send for FuelCell {}

impl FuelCell {
    /// Sets the remaining fuel to zero.
    ///
    /// # Safety
    /// The instance this cell came from must still be alive.
    pub(crate) unsafe fn drain(&self) {
        let slot = self.0.as_ptr().cast::<i64>();
        // SAFETY: the definition is a live, 16-byte aligned slot in the instance's
        // VMContext (caller's contract); the guest reads and writes it with plain 8-byte
        // accesses, which an atomic store never tears.
        unsafe { std::sync::atomic::AtomicI64::from_ptr(slot) }
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The fuel counter of the instance created last on this thread, if any.
pub(crate) fn take_fuel_cell() -> Option<FuelCell> {
    FUEL_GLOBAL.with(Cell::take).map(FuelCell)
}

/// Tunables that use dynamic (bounds-checked) memories with a small guard, and cap
/// every memory's and every table's maximum.
struct Limiting {
    base: BaseTunables,
    max_pages: Pages,
    max_table_elements: u32,
    config: VMConfig,
}

impl Limiting {
    fn new(max_pages: Pages, max_table_elements: u32) -> Self {
        Self {
            base: BaseTunables::new(),
            max_pages,
            max_table_elements,
            config: VMConfig {
                wasm_stack_size: Some(WASM_STACK_BYTES),
            },
        }
    }

    fn capped(&self, ty: &MemoryType) -> Result<MemoryType, MemoryError> {
        if ty.minimum > self.max_pages {
            note_refused(Refused::Memory);
            return Err(MemoryError::MinimumMemoryTooLarge {
                min_requested: ty.minimum,
                max_allowed: self.max_pages,
            });
        }
        let mut ty = *ty;
        ty.maximum = Some(ty.maximum.map_or(self.max_pages, |m| m.min(self.max_pages)));
        Ok(ty)
    }

    /// The table type with its maximum capped, so `table.grow` past the cap is
    /// refused (it returns -1 to the guest) instead of allocating.
    fn capped_table(&self, ty: &TableType) -> Result<TableType, String> {
        let cap = self.max_table_elements;
        if ty.minimum > cap {
            note_refused(Refused::Table);
            return Err(format!(
                "a table of {} elements is over the limit of {cap} (table_elements)",
                ty.minimum
            ));
        }
        let mut ty = *ty;
        ty.maximum = Some(ty.maximum.map_or(cap, |m| m.min(cap)));
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
        // SAFETY: no VMContext location: the memory owns its definition.
        unsafe { Reserved::create(&ty, style, None) }
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        let ty = self.capped(ty)?;
        // SAFETY: forwarded unchanged from the caller's contract.
        unsafe { Reserved::create(&ty, style, Some(vm_definition_location)) }
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        VMTable::new(&self.capped_table(ty)?, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        let ty = self.capped_table(ty)?;
        // SAFETY: forwarded unchanged from the caller's contract.
        unsafe { VMTable::from_definition(&ty, style, vm_definition_location) }
    }

    fn vmconfig(&self) -> &VMConfig {
        &self.config
    }

    fn create_globals(
        &self,
        context: &mut StoreObjects,
        module: &ModuleInfo,
        vm_definition_locations: &[NonNull<VMGlobalDefinition>],
    ) -> Result<PrimaryMap<LocalGlobalIndex, InternalStoreHandle<VMGlobal>>, LinkError> {
        let globals = self
            .base
            .create_globals(context, module, vm_definition_locations)?;
        let fuel = match module.exports.get(super::fuel::FUEL_EXPORT) {
            Some(ExportIndex::Global(index)) => module
                .local_global_index(*index)
                .and_then(|local| vm_definition_locations.get(local.index()))
                .copied(),
            _ => None,
        };
        FUEL_GLOBAL.with(|cell| cell.set(fuel));
        Ok(globals)
    }
}

/// A linear memory that reserves address space for its maximum (never more than the
/// manifest's ceiling) up front and grows in place by changing page protection.
///
/// wasmer's own dynamic memories reserve only their current size and move (allocate and
/// copy) on every `memory.grow`, which costs hundreds of microseconds per call for a
/// typical Rust guest; its static memories reserve 8 GiB of address space each, which a
/// Pi or a qemu user-mode process cannot afford. This sits between the two: a call with a
/// 32 MiB ceiling reserves 32 MiB plus a small guard, and growing never copies.
///
/// A refused grow is noted on the running thread (see [`take_refused`]).
#[derive(Debug)]
struct Reserved {
    mmap: Mmap,
    definition: MaybeInstanceOwned<VMMemoryDefinition>,
    ty: MemoryType,
    style: MemoryStyle,
    size: Pages,
}

// SAFETY: like wasmer's own `VMOwnedMemory`: the definition pointer refers to this
// memory's own VMContext slot or box, and wasmer serialises access through its store.
unsafe impl Send for Reserved {}
// SAFETY: as above.
unsafe impl Sync for Reserved {}

impl Reserved {
    /// # Safety
    /// `location`, when given, must point to a valid, owned `VMMemoryDefinition`.
    unsafe fn create(
        ty: &MemoryType,
        style: &MemoryStyle,
        location: Option<NonNull<VMMemoryDefinition>>,
    ) -> Result<VMMemory, MemoryError> {
        let MemoryStyle::Dynamic { offset_guard_size } = *style else {
            return Err(MemoryError::Generic(
                "kith compiles every module for dynamic memories".into(),
            ));
        };
        let maximum = ty.maximum.unwrap_or(Pages::max_value());
        let guard = usize::try_from(offset_guard_size)
            .map_err(|e| MemoryError::Generic(format!("guard size: {e}")))?;
        let reserve = maximum
            .bytes()
            .0
            .checked_add(guard)
            .ok_or_else(|| MemoryError::Generic("memory reservation overflows".into()))?;
        let accessible = ty.minimum.bytes().0;
        let mut mmap = Mmap::accessible_reserved(accessible, reserve, None, MmapType::Private)
            .map_err(MemoryError::Region)?;
        let definition = VMMemoryDefinition {
            base: mmap.as_mut_ptr(),
            current_length: accessible,
        };
        let definition = match location {
            Some(ptr) => {
                // SAFETY: the caller guarantees `ptr` is valid and ours to initialise.
                unsafe { ptr.as_ptr().write(definition) };
                MaybeInstanceOwned::Instance(ptr)
            }
            None => MaybeInstanceOwned::Host(Box::new(UnsafeCell::new(definition))),
        };
        let mut ty = *ty;
        ty.maximum = Some(maximum);
        Ok(VMMemory(Box::new(Self {
            mmap,
            definition,
            ty,
            style: *style,
            size: ty.minimum,
        })))
    }

    fn refuse(&self, delta: Pages) -> MemoryError {
        note_refused(Refused::Memory);
        MemoryError::CouldNotGrow {
            current: self.size,
            attempted_delta: delta,
        }
    }
}

impl LinearMemory for Reserved {
    fn ty(&self) -> MemoryType {
        let mut ty = self.ty;
        ty.minimum = self.size;
        ty
    }
    fn size(&self) -> Pages {
        self.size
    }
    fn style(&self) -> MemoryStyle {
        self.style
    }
    fn grow(&mut self, delta: Pages) -> Result<Pages, MemoryError> {
        let previous = self.size;
        if delta.0 == 0 {
            return Ok(previous);
        }
        let Some(new) = previous.checked_add(delta) else {
            return Err(self.refuse(delta));
        };
        if self.ty.maximum.is_some_and(|max| new > max) {
            return Err(self.refuse(delta));
        }
        let (start, end) = (previous.bytes().0, new.bytes().0);
        self.mmap
            .make_accessible(start, end - start)
            .map_err(MemoryError::Region)?;
        // SAFETY: the definition is this memory's own (see `new`).
        unsafe { (*self.definition.as_ptr().as_ptr()).current_length = end };
        self.size = new;
        Ok(previous)
    }
    fn grow_at_least(&mut self, min_size: u64) -> Result<(), MemoryError> {
        let current = self.size.bytes().0 as u64;
        if current >= min_size {
            return Ok(());
        }
        let pages = (min_size - current).div_ceil(u64::from(WASM_PAGE_SIZE as u32));
        let pages = u32::try_from(pages).map_err(|_| self.refuse(Pages(u32::MAX)))?;
        self.grow(Pages(pages)).map(|_| ())
    }
    fn vmmemory(&self) -> NonNull<VMMemoryDefinition> {
        self.definition.as_ptr()
    }
    fn try_clone(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        Err(MemoryError::UnsupportedOperation {
            message: "kith memories cannot be cloned".into(),
        })
    }
    fn copy(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        Err(MemoryError::UnsupportedOperation {
            message: "kith memories cannot be copied".into(),
        })
    }
}
